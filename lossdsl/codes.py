"""The documentation of every diagnostic code: one record per code. Torch-free.

`lossdsl check --explain CODE` prints a record; `docs/diagnostics.md` is generated from
these records (`python -m lossdsl.codes > docs/diagnostics.md`) and a test keeps it in
step. The messages shown are not written here: they are what the checker says today
about each record's bad spec, so the documentation cannot drift from the checker.
"""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass

from lossdsl.diagnostics import Diagnostic, Severity, severity_of

BAD_FILE = "bad.loss"
FIXED_FILE = "fixed.loss"


@dataclass(frozen=True)
class CodeDoc:
    code: str
    title: str
    explanation: str
    bad: str  # a minimal spec that raises `code`
    at: tuple[int, int]  # line, col of the diagnostic in `bad`
    fix: str  # how to fix it, in words
    fixed: str  # `bad`, fixed: it raises no `code`
    sliced: bool = False  # checked as `lossdsl check --sliced` (whether it runs in slices)

    @property
    def severity(self) -> Severity:
        return severity_of(self.code)


def _spec(*lines: str) -> str:
    return "\n".join(lines) + "\n"


_RECORDS = (
    CodeDoc(
        "E100",
        "syntax error",
        "The text does not follow the grammar. The message says, in words, what the parser "
        "expected at the caret and what it found instead. Chained comparisons "
        "(`a < b < c`) are also E100: comparisons do not associate; so is Python's `**`: "
        "a power is written `x ^ 2`. A spec file that is not UTF-8 text (a Latin-1 byte, "
        "UTF-16, a NUL byte) is E100 at its first offending byte; a UTF-8 byte-order mark is "
        "accepted.",
        _spec("loss e100", "input x float[N] grad", "term t = mean(square(x))"),
        (2, 9),
        "Write what was expected: here the `:` between an input's name and its type.",
        _spec("loss e100", "input x : float[N] grad", "term t = mean(square(x))"),
    ),
    CodeDoc(
        "E101",
        "unknown name",
        "A value (input, param, let, term) or a callable (op, def) that is not defined. "
        "The fix suggests the closest known name. A `def` sees only its arguments, other "
        "defs and built-ins, so an input used inside a def is E101 too. Names reserved for "
        "later versions (`global_sum`, `world_size`, `ema`, `matmul`) are E101 with a note.",
        _spec("loss e101", "input x : float[N] grad", "term t = mena(square(x))"),
        (3, 10),
        "Correct the spelling, declare the name, or pass the value to the def as an argument.",
        _spec("loss e101", "input x : float[N] grad", "term t = mean(square(x))"),
    ),
    CodeDoc(
        "E102",
        "name defined twice",
        "Two declarations of one name: two values, two defs (local or brought in by `use`), "
        "or a declaration that reuses a built-in value name (`step`, `inf`, `pi`). The "
        "diagnostic points at the second definition.",
        _spec(
            "loss e102",
            "input x : float[N] grad",
            "def sq(a) = square(a)",
            "def sq(a) = a ^ 2",
            "term t = mean(sq(x))",
        ),
        (4, 5),
        "Remove one of the definitions, or rename it.",
        _spec(
            "loss e102", "input x : float[N] grad", "def sq(a) = square(a)", "term t = mean(sq(x))"
        ),
    ),
    CodeDoc(
        "E103",
        "wrong arguments",
        "A call to an op or def with the wrong number of positional arguments, or with a "
        "keyword argument the op does not take (`dims=` for `dim=`).",
        _spec("loss e103", "input x : float[N] grad", "term t = mean(square(x, 2))"),
        (3, 15),
        "Call it as the op table of docs/language.md (or the def's parameter list) says.",
        _spec("loss e103", "input x : float[N] grad", "term t = mean(square(x))"),
    ),
    CodeDoc(
        "E104",
        "unknown dim, or a dim with two sizes",
        "A dim name that no input declares (in `dim=`, a range such as `in [0, C)`, or "
        "`size(D)`), a misplaced `...`, or a dim bound to two different sizes.",
        _spec("loss e104", "input x : float[B, T] grad", "term t = mean(sum(square(x), dim=Q))"),
        (3, 34),
        "Use a dim that an input declares.",
        _spec("loss e104", "input x : float[B, T] grad", "term t = mean(sum(square(x), dim=T))"),
    ),
    CodeDoc(
        "E105",
        "`use` target not found, or a cycle of `use`",
        '`use NAME` names no spec of the standard library, `use "path.loss"` names no '
        "file (paths are relative to the spec that uses them), or specs use each other in "
        "a cycle. `lossdsl check NAME` with an unknown name is E105 as well. A name is a path "
        "first (from the using spec's folder, or the working directory), else a standard spec: "
        "its stem (`ppo`) or its path under `specs/` (`rl/ppo`); an unquoted `use NAME` is a "
        "standard name only. A path that is not a regular `.loss` file (a folder, a fifo, a "
        "device, a file of another kind or a link to one) or that is over 4 MiB is E105 too; "
        "its content is never read nor shown.",
        _spec(
            "loss e105",
            "use hubber",
            "input x : float[N] grad",
            "input y : float[N]",
            "term t = mean(huber_loss(x, y, 1.0))",
        ),
        (2, 1),
        "Name an existing spec (`lossdsl list` shows the standard library); break a cycle by "
        "moving the shared defs into a third spec that both use.",
        _spec(
            "loss e105",
            "use huber",
            "input x : float[N] grad",
            "input y : float[N]",
            "term t = mean(huber_loss(x, y, 1.0))",
        ),
    ),
    CodeDoc(
        "E106",
        "recursive `def`",
        "A def that calls itself, directly or through other defs. Defs are inlined where "
        "they are called, so recursion would never end. The diagnostic points at the "
        "recursive call. (A cycle of `let`s is E106 too.)",
        _spec(
            "loss e106",
            "input x : float[N] grad",
            "def power(v, n) = where(n > 0, v * power(v, n - 1), 1)",
            "term t = mean(power(x, 2))",
        ),
        (3, 36),
        "Write it without recursion: with an op (`square`, `^`) or in closed form.",
        _spec("loss e106", "input x : float[N] grad", "term t = mean(square(x))"),
    ),
    CodeDoc(
        "E200",
        "shapes do not broadcast",
        "Broadcasting aligns dims from the right; two different named dims aligned against "
        "each other are an error even when their sizes happen to agree. The classic case is "
        "a per-sequence weight `float[B]` meeting a per-token `float[B, T]`: T is aligned "
        "with B. The diagnostic points at the use, not at the declarations.",
        _spec(
            "loss e200",
            "input x : float[B, T] grad",
            "input w : float[B] in [0, inf)",
            "term t = mean(w * square(x))",
        ),
        (4, 15),
        "Declare the per-sequence input with a literal 1 for the token dim: `float[B, 1]`.",
        _spec(
            "loss e200",
            "input x : float[B, T] grad",
            "input w : float[B, 1] in [0, inf)",
            "term t = mean(w * square(x))",
        ),
    ),
    CodeDoc(
        "E201",
        "dtype misuse",
        "A float used as an index (`gather`, `one_hot`), a non-bool `where=` mask or "
        "`where(c, …)` condition, and similar. Bool promotes to float (true = 1) in "
        "arithmetic and sums, but nothing converts a float to an index or a mask silently. "
        "Also a value read where it cannot be: a state's start that reads an input, a "
        "param's default that reads a state or a learned param, a learned param's start "
        "that is not a number.",
        _spec(
            "loss e201",
            "input logits : float[B, V] grad",
            "input labels : float[B]",
            "term t = -mean(gather(log_softmax(logits, dim=V), labels, dim=V))",
        ),
        (4, 51),
        "Declare indices as `int` (with their range) and masks as `bool`.",
        _spec(
            "loss e201",
            "input logits : float[B, V] grad",
            "input labels : int[B] in [0, V)",
            "term t = -mean(gather(log_softmax(logits, dim=V), labels, dim=V))",
        ),
    ),
    CodeDoc(
        "E202",
        "a term that is not a scalar",
        "A term must reduce to a scalar; the message gives the type it has. Metrics may "
        "have any shape (a per-token loss for logging is fine). A state's update and the "
        "argument of `ema` must be scalars too.",
        _spec("loss e202", "input x : float[B, T] grad", "term t = sum(square(x), dim=T)"),
        (3, 1),
        "Reduce the remaining dims (`mean`, `sum`), or make it a `metric`.",
        _spec("loss e202", "input x : float[B, T] grad", "term t = mean(sum(square(x), dim=T))"),
    ),
    CodeDoc(
        "E203",
        "`minimize` is not a weighted sum of terms",
        "The objective must be `w1 * t1 + w2 * t2 - …` with weights built from numbers, "
        "params (learned ones too), states and `step` only. A term appearing twice, a "
        "constant offset, a product or function of terms, or a weight that depends on an "
        "input (an `ema`, which averages one, too) is E203. The diagnostic "
        "points at the offending part of `minimize`.",
        _spec(
            "loss e203",
            "input x : float[N] grad",
            "input y : float[N]",
            "term a = mean(square(x - y))",
            "minimize a + 1",
        ),
        (5, 14),
        "Drop the constant (it does not change the gradient), or make it a term of its own.",
        _spec(
            "loss e203",
            "input x : float[N] grad",
            "input y : float[N]",
            "term a = mean(square(x - y))",
            "minimize a",
        ),
    ),
    CodeDoc(
        "E204",
        "param outside its range, or an empty range",
        "A param's value (its default, or a value given at load time) lies outside its "
        "declared range, a static choice is not among those listed, or a declared range is "
        "empty (`(1, 1]`). Likewise a state's start or a learned param's start outside "
        "its range, and an `ema` decay outside [0, 1).",
        _spec(
            "loss e204",
            "param clip = 1.5 in [0, 1]",
            "input x : float[N] grad",
            "term t = mean(square(clamp(x, -clip, clip)))",
        ),
        (2, 14),
        "Give a value inside the range, or widen the range if the value is meant.",
        _spec(
            "loss e204",
            "param clip = 0.5 in [0, 1]",
            "input x : float[N] grad",
            "term t = mean(square(clamp(x, -clip, clip)))",
        ),
    ),
    CodeDoc(
        "E205",
        "the spec cannot run in slices",
        "`lossdsl.load(…, chunk=N)` runs a spec in slices of rows so that no `[rows, V]` "
        "intermediate larger than a slice is alive, and `lossdsl check --sliced` asks "
        "whether it can. It cannot when no input has both a dim an op needs whole (the "
        "class dim of a softmax, the contracted dim of a matmul) and a dim of rows, when "
        "every dim of such an input is needed whole (a softmax over the batch), or when a "
        "value that keeps the class dim is read after the slices (a metric of the whole "
        "softmax). The message names the node that prevents it.",
        _spec(
            "loss e205",
            "input logits : float[N, V] grad",
            "term t = mean(entropy(logits, dim=V))",
            "metric p = softmax(logits, dim=V)",
        ),
        (4, 12),
        "Reduce the value over the class dim where it is made (`max(softmax(logits, "
        "dim=V), dim=V)`), or load the spec without `chunk=`.",
        _spec(
            "loss e205",
            "input logits : float[N, V] grad",
            "term t = mean(entropy(logits, dim=V))",
            "metric p = max(softmax(logits, dim=V), dim=V)",
        ),
        sliced=True,
    ),
    CodeDoc(
        "E206",
        "global_sum of a value that carries gradient",
        "`global_sum(x)` sums x over the ranks of the data-parallel group: a normaliser, "
        "such as a count of tokens. The collective passes no gradient back, so x must carry "
        "none: a count, a mask, or a detached value. Nor may x read another `global_sum`: "
        "the totals of an optimizer step are summed over the ranks in one all-reduce.",
        _spec(
            "loss e206",
            "input x : float[B, T] grad",
            "input mask : bool[B, T]",
            "term t = sum(square(x), where=mask) / max(global_sum(sum(square(x))), 1)",
        ),
        (4, 43),
        "Sum what normalises the loss: `global_sum(count(mask))`, or `detach` the value.",
        _spec(
            "loss e206",
            "input x : float[B, T] grad",
            "input mask : bool[B, T]",
            "term t = sum(square(x), where=mask) / max(global_sum(count(mask)), 1)",
        ),
    ),
    CodeDoc(
        "W300",
        "argument outside the op's domain, or at a pole",
        "The interval analysis finds that the argument of `log`, `log1p`, `sqrt`, a "
        "division and the like can take a value outside the op's domain or at a pole (the "
        "log of something that may be 0, a division by something that may be 0), given "
        "the declared `in` ranges. At run time that is -inf, inf or NaN, and NaN "
        "gradients.",
        _spec("loss w300", "input p : float[N] grad in [0, 1]", "term t = -mean(log(p))"),
        (3, 16),
        "Keep the argument inside the domain (`log(clamp(p, min=1e-8))`), use a stable op "
        "(`log_softmax`, `logsigmoid`, `xlogy`), or declare the tighter range the input "
        "really has (`in (0, 1]`).",
        _spec(
            "loss w300",
            "input p : float[N] grad in [0, 1]",
            "term t = -mean(log(clamp(p, min=1e-8)))",
        ),
    ),
    CodeDoc(
        "W301",
        "overflow in exp",
        "The argument of `exp` (or the result of `^`) can exceed what float32 holds: "
        "exp overflows to inf above 88.",
        _spec("loss w301", "input x : float[N] grad in [0, 100]", "term t = mean(exp(x))"),
        (3, 15),
        "Clamp the argument (`exp(clamp(x, max=20))`), or use the log-domain op "
        "(`logsumexp`, `softplus`, `logaddexp`).",
        _spec(
            "loss w301",
            "input x : float[N] grad in [0, 100]",
            "term t = mean(exp(clamp(x, max=20)))",
        ),
    ),
    CodeDoc(
        "W302",
        "infinite gradient",
        "`sqrt`, `^p` with p < 1 and similar ops have an infinite derivative at a point "
        "(0 for `sqrt`) that the argument's range contains: the loss is finite there, its "
        "gradient is not.",
        _spec("loss w302", "input x : float[N] grad in [0, inf)", "term t = mean(sqrt(x))"),
        (3, 15),
        "Keep the argument away from the point: `sqrt(x + 1e-12)` or `sqrt(clamp(x, min=1e-12))`.",
        _spec(
            "loss w302",
            "input x : float[N] grad in [0, inf)",
            "term t = mean(sqrt(x + 1e-12))",
        ),
    ),
    CodeDoc(
        "W303",
        "NaN gradient leaking through `where`",
        "`where(c, a, b)` selects values, but the backward pass differentiates both "
        "branches everywhere: where the unselected branch is inf or NaN (a log of 0, a "
        "division by 0), its NaN gradient still reaches the `grad` inputs.",
        _spec(
            "loss w303",
            "input x : float[N] grad in [-1, 1]",
            "term t = mean(square(where(x > 0, log(x), 0)))",
        ),
        (3, 22),
        "Guard the argument as well as the result (the double-`where` pattern): "
        "`where(c, f(where(c, x, safe)), other)`.",
        _spec(
            "loss w303",
            "input x : float[N] grad in [-1, 1]",
            "term t = mean(square(where(x > 0, log(where(x > 0, x, 1)), 0)))",
        ),
    ),
    CodeDoc(
        "W304",
        "low-precision input into a precision-sensitive op",
        "An input declared `bf16` or `f16` reaches `exp`, `log`, the softmax family or a "
        "sum. lossdsl computes the op upcast to float32; this notes it. Inputs declared "
        "`float` (any floating dtype) never raise it.",
        _spec(
            "loss w304",
            "input logits : bf16[B, V] grad",
            "input labels : int[B] in [0, V)",
            "term t = -mean(gather(log_softmax(logits, dim=V), labels, dim=V))",
        ),
        (4, 23),
        "Nothing is wrong; to silence it, declare the input `float`, or write "
        "`# lossdsl: allow W304` at the end of the line.",
        _spec(
            "loss w304",
            "input logits : float[B, V] grad",
            "input labels : int[B] in [0, V)",
            "term t = -mean(gather(log_softmax(logits, dim=V), labels, dim=V))",
        ),
    ),
    CodeDoc(
        "W400",
        "a term no `grad` input influences",
        "The term does not depend on any input marked `grad` (detached values count as "
        "constants), so its gradient is always zero and training it does nothing.",
        _spec(
            "loss w400",
            "input x : float[N] grad",
            "input y : float[N]",
            "term t = mean(square(y))",
        ),
        (4, 1),
        "Use the prediction in the term, or mark the input it should train with `grad`.",
        _spec(
            "loss w400",
            "input x : float[N] grad",
            "input y : float[N]",
            "term t = mean(square(x - y))",
        ),
    ),
    CodeDoc(
        "W401",
        "zero gradient through a non-differentiable op",
        "The term depends on the `grad` inputs only through piecewise-constant ops "
        "(comparisons, `sign`, `floor`, `round`, `argmax`, `count`): its gradient is zero "
        "almost everywhere. A comparison used as a `where` condition or a `where=` mask "
        "selects values and does not count.",
        _spec(
            "loss w401",
            "input x : float[N] grad",
            "input y : float[N]",
            "term t = mean(x > y)",
        ),
        (4, 1),
        "Use a smooth surrogate, e.g. `sigmoid(k * (x - y))` for `x > y`, or make it a metric.",
        _spec(
            "loss w401",
            "input x : float[N] grad",
            "input y : float[N]",
            "term t = mean(sigmoid(x - y))",
        ),
    ),
    CodeDoc(
        "W402",
        "a term unbounded below",
        "Over the declared ranges of its `grad` inputs, and for some finite values of the "
        "other inputs, the term can go to -inf: minimizing it can run away. The vanilla "
        "policy gradient `-mean(logp * adv)` is the classic case; the clipped PPO "
        "surrogate is bounded for any finite advantages.",
        _spec(
            "loss w402",
            "input logp : float[N] grad in (-inf, 0]",
            "input adv : float[N]",
            "term t = -mean(logp * adv)",
        ),
        (4, 1),
        "Bound the term: clip the ratio as PPO does, or declare the tighter ranges the "
        "inputs really have.",
        _spec(
            "loss w402",
            "input logp : float[N] grad in (-inf, 0]",
            "input old_logp : float[N] in (-inf, 0]",
            "input adv : float[N]",
            "let ratio = exp(clamp(logp - old_logp, max=20))",
            "term t = -mean(min(ratio * adv, clamp(ratio, 0.8, 1.2) * adv))",
        ),
    ),
    CodeDoc(
        "I500",
        "stability rewrite applied",
        "lossdsl replaced a formula that overflows or cancels by its stable form, keeping "
        "the value: log(softmax) -> log_softmax, log(sum(exp)) -> logsumexp, log(1+x) -> "
        "log1p, exp(x)-1 -> expm1, log(sigmoid) -> logsigmoid, log(1+exp(x)) -> softplus, "
        "x*log(x) -> xlogy, and others. The message names the rule.",
        _spec(
            "loss i500",
            "input logits : float[B, V] grad",
            "input labels : int[B] in [0, V)",
            "term t = -mean(gather(log(softmax(logits, dim=V)), labels, dim=V))",
        ),
        (4, 23),
        "Nothing to fix: the compiled loss already uses the stable form. Writing it "
        "yourself makes the spec say what runs.",
        _spec(
            "loss i500",
            "input logits : float[B, V] grad",
            "input labels : int[B] in [0, V)",
            "term t = -mean(gather(log_softmax(logits, dim=V), labels, dim=V))",
        ),
    ),
)

CODES: dict[str, CodeDoc] = {record.code: record for record in _RECORDS}


def lookup(code: str) -> CodeDoc | None:
    return CODES.get(code.strip().upper())


def produced(doc: CodeDoc, text: str | None = None, file: str = BAD_FILE) -> list[Diagnostic]:
    """The diagnostics of `doc.code` the checker reports today for `text` (the bad spec)."""
    found = _check(doc.bad if text is None else text, file, doc.sliced)[0]
    return [d for d in found if d.code == doc.code]


def message(doc: CodeDoc) -> str:
    """What `lossdsl check bad.loss` prints for the bad spec's `doc.code` diagnostics."""
    diagnostics, sources = _check(doc.bad, BAD_FILE, doc.sliced)
    return "\n".join(d.render(sources.get(d.span.file)) for d in diagnostics if d.code == doc.code)


def _check(text: str, file: str, sliced: bool = False) -> tuple[list[Diagnostic], dict[str, str]]:
    from lossdsl.passes import check_text

    checked = check_text(text, file, sliced=sliced)
    return checked.diagnostics, checked.sources


def explain(code: str) -> str | None:
    """The plain-text documentation of a code (`lossdsl check --explain`); None if unknown."""
    doc = lookup(code)
    if doc is None:
        return None
    said = message(doc) or "(the checker does not report it for this spec today)"
    return "\n".join(
        [
            f"{doc.code} ({doc.severity}): {doc.title}",
            "",
            textwrap.fill(doc.explanation, 88),
            "",
            f"A minimal spec that raises it ({BAD_FILE}):",
            "",
            _indent(doc.bad),
            "",
            "lossdsl check says:",
            "",
            _indent(said),
            "",
            textwrap.fill(f"Fix: {doc.fix}", 88),
            "",
            _indent(doc.fixed),
        ]
    )


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" if line else "" for line in text.rstrip("\n").splitlines())


_INTRO = """\
# Diagnostics

<!-- Generated from lossdsl/codes.py by `python -m lossdsl.codes > docs/diagnostics.md`.
     Do not edit by hand: tests/test_diagnostics_doc.py fails when this file drifts. -->

Every diagnostic has a stable code, a severity, a message, the span
`file:line:col`, a caret excerpt of the source line and, where possible, a fix.
`lossdsl check --explain CODE` prints a code's entry below. The messages shown are
what `lossdsl check` prints today for each minimal spec (saved as `bad.loss`).

Exit status of `lossdsl check`: 0 clean, 1 warnings with `--strict`, 2 errors.

## Silencing warnings and notes

- `# lossdsl: allow W300` at the end of a line silences the codes it names (one or
  more, separated by commas or spaces: `# lossdsl: allow W300, W302`) for every
  diagnostic that starts on that line. It works in any file, including a spec
  brought in by `use`: a diagnostic inside an inlined `def` points at the def's
  body, so the comment goes on that line of the used spec.
- `lossdsl check --allow W301` silences a code everywhere for that run
  (repeatable, and comma-separated: `--allow W301,W304`).
- Errors (E100–E206) cannot be silenced: a spec with an error does not build.
- A code in an allow comment that does not exist is ignored; `--allow` with an
  unknown code or an error code is refused (exit 2).

## Codes

"""


def render_markdown() -> str:
    """docs/diagnostics.md."""
    parts = [_INTRO, "| code | severity | meaning |\n|---|---|---|\n"]
    parts += [f"| {d.code} | {d.severity} | {d.title} |\n" for d in CODES.values()]
    for doc in CODES.values():
        said = message(doc) or "(the checker does not report it for this spec today)"
        parts.append(
            f"\n### {doc.code}: {doc.title}\n\n"
            f"Severity: {doc.severity}. {doc.explanation}\n\n"
            f"A minimal spec that raises it:\n\n```\n{doc.bad}```\n\n"
            f"`lossdsl check` says:\n\n```\n{said}\n```\n\n"
            f"Fix: {doc.fix}\n\n```\n{doc.fixed}```\n"
        )
    return "".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render_markdown())
