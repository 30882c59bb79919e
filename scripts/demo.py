"""Train a few steps of a tiny policy with the standard PPO spec, and check that the
standalone module written by `lossdsl compile` agrees with `lossdsl.load`."""

import importlib.util
import sys
import time

import torch

import lossdsl


def standalone_agrees(path: str) -> None:
    spec = importlib.util.spec_from_file_location("cross_entropy_loss", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    logits, target = torch.randn(16, 10), torch.randint(0, 10, (16,))
    ours = lossdsl.load("cross_entropy")(input=logits, target=target).loss
    theirs = module.CrossEntropy()(input=logits, target=target).loss
    reference = torch.nn.functional.cross_entropy(logits, target)
    print(f"cross_entropy: lossdsl {ours:.6f}, standalone {theirs:.6f}, torch {reference:.6f}")
    assert torch.allclose(ours, reference) and torch.allclose(theirs, reference)


def compile_notice(backend: str) -> str:
    """What the first compiled call is about to do, and how long it takes."""
    if backend == "inductor":
        return (
            "compiling the loss with torch.compile (Inductor), forward and backward: the first "
            "call takes about 15-45 s on a CPU; later calls reuse the compiled code"
        )
    return f"compiling the loss with torch.compile (backend {backend!r}) on the first call"


def train_ppo(compile: bool, backend: str = "inductor") -> None:
    torch.manual_seed(0)
    B, T, V, H = 4, 16, 32, 24
    policy = torch.nn.Sequential(torch.nn.Embedding(V, H), torch.nn.Linear(H, V + 1))
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    loss_fn = lossdsl.load("ppo", params={"clip_low": 0.2}, compile=compile, backend=backend)
    tokens = torch.randint(0, V, (B, T))
    with torch.no_grad():
        old = policy(tokens)[..., :V].log_softmax(-1)
    actions = torch.randint(0, V, (B, T))
    old_logp = old.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    advantages = torch.randn(B, T)
    for step in range(5):
        first_compiled_call = compile and step == 0
        if first_compiled_call:
            print(compile_notice(backend), flush=True)
            started = time.perf_counter()
        out = policy(tokens)
        result = loss_fn(
            logits=out[..., :V],
            values=out[..., V],
            actions=actions,
            old_logp=old_logp,
            old_values=out[..., V].detach(),
            advantages=advantages,
            returns=advantages,
            mask=torch.ones(B, T),
            step=step,
        )
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()
        if first_compiled_call:
            print(f"compiled in {time.perf_counter() - started:.0f} s", flush=True)
        terms = ", ".join(f"{k}={v:.4f}" for k, v in result.terms.items())
        print(
            f"ppo ({'compiled' if compile else 'eager'}) step {step}: "
            f"loss={result.loss:.4f} {terms}"
        )


if __name__ == "__main__":
    standalone_agrees(sys.argv[1])
    train_ppo(compile=False)
    train_ppo(compile=True)
    print("demo ok")
