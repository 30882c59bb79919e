"""A tiny character-level language model: trained with the standard `sft_nll` spec, then
improved against a programmatic reward with `grpo`, and, from the same start, with `dpo` on
preference pairs built from that reward.

    python examples/char_lm.py          # full run, about a minute
    python examples/char_lm.py --fast   # seconds: fewer steps of each stage

The corpus is generated here (short sentences from a few word lists); no download. The
reward asks for a style the corpus does not have: a completion of 24 characters should be
30 % the letter `e` (the corpus has about 10 %): reward = -|share of e - 0.3|.

* SFT: next-character prediction, `sft_nll` (logits [B, T, V], labels [B, T]).
* GRPO: for each prompt a group of completions is sampled; their advantages are the rewards
  normalised within the group ([B, 1]); `grpo` takes the per-token log-probs of the sampled
  characters, the sampling policy's (old) log-probs and the SFT model's (reference) ones,
  with its clipped surrogate and k3 KL penalty.
* DPO: for each prompt two completions are sampled from the current policy; the one with
  the higher reward is `chosen`; `dpo` takes the summed log-probs of both under the policy
  and under the SFT model (reference). Pairs are rebuilt each round (iterative DPO).
"""

from __future__ import annotations

import argparse
import copy
import random
import time
from dataclasses import dataclass, field

import torch
from torch import nn

import lossdsl

SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "our teacher", "a small bird", "she"]
VERBS = ["sees", "finds", "likes", "wants", "draws", "keeps", "holds", "moves"]
OBJECTS = ["a red ball", "the map", "two books", "some bread", "a long rope", "the lamp"]
PLACES = ["at home", "in the park", "by the river", "on monday", "after lunch", "today"]

TARGET_CHAR, TARGET_SHARE = "e", 0.3
PROMPT_LEN, COMPLETION_LEN = 8, 24


def make_corpus(sentences: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(
        f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(PLACES)}."
        for _ in range(sentences)
    )


class Vocab:
    def __init__(self, text: str) -> None:
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([self.index[c] for c in text])

    def decode(self, tokens: torch.Tensor) -> str:
        return "".join(self.chars[int(t)] for t in tokens)


class CharLM(nn.Module):
    def __init__(self, vocab_size: int, hidden: int = 96) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, 32)
        self.rnn = nn.GRU(32, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(
        self, tokens: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, state = self.rnn(self.embed(tokens), state)
        return self.head(hidden), state


@torch.no_grad()
def sample(model: CharLM, prompts: torch.Tensor, length: int) -> torch.Tensor:
    """Completions of `length` characters, sampled at temperature 1."""
    logits, state = model(prompts)
    out = []
    for _ in range(length):
        token = torch.distributions.Categorical(logits=logits[:, -1]).sample()
        out.append(token)
        logits, state = model(token.unsqueeze(1), state)
    return torch.stack(out, dim=1)


def completion_logp(
    model: CharLM, prompts: torch.Tensor, completions: torch.Tensor
) -> torch.Tensor:
    """log π(c_t | prompt, c_<t) for every completion character: [B, COMPLETION_LEN]."""
    tokens = torch.cat([prompts, completions], dim=1)
    logits, _ = model(tokens[:, :-1])
    logp = logits[:, prompts.shape[1] - 1 :].log_softmax(-1)
    return logp.gather(-1, completions.unsqueeze(-1)).squeeze(-1)


def rewards(vocab: Vocab, completions: torch.Tensor) -> torch.Tensor:
    share = (completions == vocab.index[TARGET_CHAR]).float().mean(dim=1)
    return -(share - TARGET_SHARE).abs()


@dataclass
class Stage:
    name: str
    history: list[float] = field(default_factory=list)  # the stage's measure, per report


@dataclass(frozen=True)
class Config:
    corpus_sentences: int = 2000
    sft_steps: int = 600
    rl_steps: int = 150
    prompts: int = 16
    group: int = 8
    report_every: int = 25
    seed: int = 0


FULL = Config()
FAST = Config(corpus_sentences=400, sft_steps=80, rl_steps=20, report_every=10)


class Experiment:
    def __init__(self, config: Config) -> None:
        torch.manual_seed(config.seed)
        self.config = config
        self.text = make_corpus(config.corpus_sentences, config.seed)
        self.vocab = Vocab(self.text)
        self.data = self.vocab.encode(self.text)
        self.generator = torch.Generator().manual_seed(config.seed + 1)
        self.held_out = self.windows(256, PROMPT_LEN)  # the prompts every evaluation uses

    def windows(self, count: int, length: int) -> torch.Tensor:
        starts = torch.randint(0, len(self.data) - length, (count,), generator=self.generator)
        return torch.stack([self.data[s : s + length] for s in starts.tolist()])

    def mean_reward(self, model: CharLM) -> float:
        """The mean reward of completions of the held-out prompts, sampled with the same
        random numbers each time (so two equal models score the same)."""
        state = torch.random.get_rng_state()
        torch.manual_seed(12345)
        value = float(rewards(self.vocab, sample(model, self.held_out, COMPLETION_LEN)).mean())
        torch.random.set_rng_state(state)
        return value

    # ---- stage 1: supervised fine-tuning -----------------------------------------------

    def sft(self, quiet: bool = False) -> tuple[CharLM, Stage]:
        model = CharLM(len(self.vocab.chars))
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        loss_fn = lossdsl.load("sft_nll")
        stage = Stage("sft nll")
        for step in range(self.config.sft_steps):
            batch = self.windows(32, 65)
            logits, _ = model(batch[:, :-1])
            out = loss_fn(logits=logits, labels=batch[:, 1:], step=step)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            if step % self.config.report_every == 0 or step == self.config.sft_steps - 1:
                stage.history.append(float(out.terms["nll"]))
                if not quiet:
                    print(
                        f"sft  step {step:4d}  nll {float(out.terms['nll']):.3f}  "
                        f"accuracy {float(out.metrics['accuracy']):.3f}",
                        flush=True,
                    )
        return model, stage

    # ---- stage 2: GRPO -------------------------------------------------------------------

    def grpo(self, reference: CharLM, quiet: bool = False) -> tuple[CharLM, Stage]:
        policy = copy.deepcopy(reference).requires_grad_(True)
        optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
        loss_fn = lossdsl.load("grpo", params={"kl_coef": 0.02})
        stage = Stage("grpo reward")
        stage.history.append(self.mean_reward(policy))
        g = self.config.group
        for step in range(self.config.rl_steps):
            prompts = self.windows(self.config.prompts, PROMPT_LEN).repeat_interleave(g, dim=0)
            completions = sample(policy, prompts, COMPLETION_LEN)
            reward = rewards(self.vocab, completions).view(-1, g)
            advantages = (reward - reward.mean(1, keepdim=True)) / (
                reward.std(1, keepdim=True) + 1e-4
            )
            with torch.no_grad():
                old_logp = completion_logp(policy, prompts, completions)
                ref_logp = completion_logp(reference, prompts, completions)
            for _ in range(2):  # two updates per batch: the ratio and its clip come into play
                out = loss_fn(
                    logp=completion_logp(policy, prompts, completions),
                    old_logp=old_logp,
                    ref_logp=ref_logp,
                    advantages=advantages.reshape(-1, 1),
                    mask=torch.ones_like(completions, dtype=torch.bool),
                    step=step,
                )
                optimizer.zero_grad()
                out.loss.backward()
                optimizer.step()
            if (step + 1) % self.config.report_every == 0:
                stage.history.append(self.mean_reward(policy))
                if not quiet:
                    print(
                        f"grpo step {step + 1:4d}  reward {stage.history[-1]:+.4f}  "
                        f"batch reward {float(reward.mean()):+.4f}  "
                        f"policy {float(out.terms['policy']):+.4f}  "
                        f"kl {float(out.terms['kl']):.4f}  "
                        f"clip_frac {float(out.metrics['clip_frac']):.3f}",
                        flush=True,
                    )
        return policy, stage

    # ---- stage 3: DPO on pairs ranked by the reward -----------------------------------

    def dpo(self, reference: CharLM, quiet: bool = False) -> tuple[CharLM, Stage]:
        policy = copy.deepcopy(reference).requires_grad_(True)
        optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
        loss_fn = lossdsl.load("dpo", params={"beta": 0.1})
        stage = Stage("dpo reward")
        stage.history.append(self.mean_reward(policy))
        pairs = self.config.prompts * self.config.group // 2
        for step in range(self.config.rl_steps):
            prompts = self.windows(pairs, PROMPT_LEN)
            first = sample(policy, prompts, COMPLETION_LEN)
            second = sample(policy, prompts, COMPLETION_LEN)
            first_wins = (rewards(self.vocab, first) > rewards(self.vocab, second)).unsqueeze(1)
            chosen = torch.where(first_wins, first, second)
            rejected = torch.where(first_wins, second, first)
            ties = rewards(self.vocab, first) == rewards(self.vocab, second)
            prompts, chosen, rejected = prompts[~ties], chosen[~ties], rejected[~ties]
            with torch.no_grad():
                ref_chosen = completion_logp(reference, prompts, chosen).sum(1)
                ref_rejected = completion_logp(reference, prompts, rejected).sum(1)
            out = loss_fn(
                policy_chosen_logps=completion_logp(policy, prompts, chosen).sum(1),
                policy_rejected_logps=completion_logp(policy, prompts, rejected).sum(1),
                reference_chosen_logps=ref_chosen,
                reference_rejected_logps=ref_rejected,
                step=step,
            )
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            if (step + 1) % self.config.report_every == 0:
                stage.history.append(self.mean_reward(policy))
                if not quiet:
                    print(
                        f"dpo  step {step + 1:4d}  reward {stage.history[-1]:+.4f}  "
                        f"dpo {float(out.terms['dpo']):.4f}  "
                        f"reward_accuracy {float(out.metrics['reward_accuracy']):.3f}  "
                        f"reward_margin {float(out.metrics['reward_margin']):+.4f}",
                        flush=True,
                    )
        return policy, stage


@dataclass
class Result:
    sft: Stage
    grpo: Stage
    dpo: Stage
    samples: dict[str, str]  # a completion of one prompt by each model
    seconds: float


def run(config: Config, quiet: bool = False) -> Result:
    started = time.perf_counter()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest and leaves the machine free
    experiment = Experiment(config)
    sft_model, sft = experiment.sft(quiet)
    sft_model.requires_grad_(False)  # the reference of both stages, frozen
    grpo_model, grpo = experiment.grpo(sft_model, quiet)
    dpo_model, dpo = experiment.dpo(sft_model, quiet)
    torch.manual_seed(7)
    prompt = experiment.vocab.encode("the cat ").unsqueeze(0)
    samples = {
        name: "the cat " + experiment.vocab.decode(sample(model, prompt, 40)[0])
        for name, model in [("sft", sft_model), ("grpo", grpo_model), ("dpo", dpo_model)]
    }
    return Result(sft, grpo, dpo, samples, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="a few seconds, for the tests")
    args = parser.parse_args(argv)
    config = FAST if args.fast else FULL
    result = run(config)
    for stage in (result.sft, result.grpo, result.dpo):
        print(f"{stage.name}: {stage.history[0]:+.4f} -> {stage.history[-1]:+.4f}")
    for name, text in result.samples.items():
        print(f"{name:5s} {text!r}")
    print(f"done in {result.seconds:.0f} s")
    return result


if __name__ == "__main__":
    main()
