"""PPO on CartPole with the standard `ppo` spec: policy, value and entropy terms, and the
spec's entropy schedule (`ent_coef = linear(0.01, 0.0, steps=10000)` of the optimizer step).

    python examples/ppo_cartpole.py          # full run: 250k environment steps, a few minutes
    python examples/ppo_cartpole.py --fast   # a few seconds: the same loop, 16k steps

The training loop is ordinary PPO (Schulman et al. 2017) with GAE (Schulman et al. 2016):
rollouts from 8 environments, 4 epochs of 4 minibatches per rollout, advantages normalised
per minibatch, gradient norm clipped. The loss is the spec, nothing else: each minibatch is
passed as a batch of one-step sequences (B = minibatch, T = 1, V = 2 actions). At the end
the greedy policy (argmax of the logits) plays 20 evaluation episodes with unseen seeds.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import lossdsl


@dataclass(frozen=True)
class Config:
    total_steps: int = 250_000
    num_envs: int = 8
    rollout_steps: int = 128
    epochs: int = 4
    minibatches: int = 4
    learning_rate: float = 1e-3
    gamma: float = 0.99
    gae_lambda: float = 0.95
    max_grad_norm: float = 0.5
    eval_episodes: int = 20
    seed: int = 1


FULL = Config()
FAST = Config(total_steps=16_384, eval_episodes=5)


@dataclass
class Result:
    eval_return: float  # mean return of the greedy policy over the evaluation episodes
    first_returns: float  # mean return of the episodes of the first rollout (random-ish policy)
    last_returns: float  # mean return of the episodes that ended in the last rollout
    updates: int  # optimizer steps taken (the `step` the spec's schedule saw last)
    ent_coef_last: float  # the entropy weight at the last step, from `LossOutput.weights`
    seconds: float


def mlp(out_features: int, scale: float) -> nn.Sequential:
    layers = [
        nn.Linear(4, 64),
        nn.Tanh(),
        nn.Linear(64, 64),
        nn.Tanh(),
        nn.Linear(64, out_features),
    ]
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight, np.sqrt(2))
            nn.init.zeros_(layer.bias)
    nn.init.orthogonal_(layers[-1].weight, scale)
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.actor = mlp(2, scale=0.01)
        self.critic = mlp(1, scale=1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(obs), self.critic(obs).squeeze(-1)


class Rollouts:
    """Steps `num_envs` CartPole environments; a truncated episode (500 steps) is
    bootstrapped with the value of its last observation, a terminated one is not."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.envs = [gym.make("CartPole-v1") for _ in range(config.num_envs)]
        self.obs = np.stack(
            [env.reset(seed=config.seed + i)[0] for i, env in enumerate(self.envs)]
        ).astype(np.float32)
        self.running = np.zeros(config.num_envs)
        self.finished: list[float] = []

    def collect(self, model: ActorCritic) -> dict[str, torch.Tensor]:
        steps, n = self.config.rollout_steps, self.config.num_envs
        obs = torch.zeros(steps, n, 4)
        actions = torch.zeros(steps, n, dtype=torch.long)
        logp = torch.zeros(steps, n)
        values = torch.zeros(steps, n)
        rewards = torch.zeros(steps, n)
        dones = torch.zeros(steps, n)
        self.finished = []
        for t in range(steps):
            obs[t] = torch.from_numpy(self.obs)
            with torch.no_grad():
                logits, value = model(obs[t])
            dist = torch.distributions.Categorical(logits=logits)
            action = dist.sample()
            actions[t], logp[t], values[t] = action, dist.log_prob(action), value
            for i, env in enumerate(self.envs):
                next_obs, reward, terminated, truncated, _ = env.step(int(action[i]))
                self.running[i] += reward
                if truncated and not terminated:
                    with torch.no_grad():
                        reward += self.config.gamma * float(model.critic(torch.tensor(next_obs)))
                rewards[t, i] = float(reward)
                if terminated or truncated:
                    dones[t, i] = 1.0
                    self.finished.append(self.running[i])
                    self.running[i] = 0.0
                    next_obs, _ = env.reset()
                self.obs[i] = next_obs
        with torch.no_grad():
            _, last_value = model(torch.from_numpy(self.obs))
        advantages = gae(rewards, values, dones, last_value, self.config)
        return {
            "obs": obs.reshape(-1, 4),
            "actions": actions.reshape(-1),
            "old_logp": logp.reshape(-1),
            "old_values": values.reshape(-1),
            "advantages": advantages.reshape(-1),
            "returns": (advantages + values).reshape(-1),
        }


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    config: Config,
) -> torch.Tensor:
    """Generalised advantage estimates, backwards over the rollout; `dones[t]` cuts the
    trace after step t."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(rewards.shape[0])):
        keep = 1.0 - dones[t]
        delta = rewards[t] + config.gamma * next_value * keep - values[t]
        running = delta + config.gamma * config.gae_lambda * keep * running
        advantages[t] = running
        next_value = values[t]
    return advantages


def evaluate(model: ActorCritic, episodes: int, seed: int) -> float:
    """Mean return of the greedy policy over `episodes` episodes with seeds never trained on."""
    env = gym.make("CartPole-v1")
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                logits, _ = model(torch.from_numpy(obs.astype(np.float32)))
            obs, reward, terminated, truncated, _ = env.step(int(logits.argmax()))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def train(config: Config, log_every: int = 20, quiet: bool = False) -> Result:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    torch.set_num_threads(1)  # tiny networks: one thread is fastest and leaves the machine free
    model = ActorCritic()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, eps=1e-5)
    loss_fn = lossdsl.load("ppo")  # clip 0.2, value clip 0.2, vf_coef 0.5, entropy schedule
    rollouts = Rollouts(config)
    batch = config.num_envs * config.rollout_steps
    iterations = config.total_steps // batch
    minibatch = batch // config.minibatches
    step, first_returns, ent_coef = 0, float("nan"), float("nan")
    for iteration in range(iterations):
        for group in optimizer.param_groups:  # learning rate annealed linearly to 0
            group["lr"] = config.learning_rate * (1 - iteration / iterations)
        data = rollouts.collect(model)
        if iteration == 0:
            first_returns = float(np.mean(rollouts.finished))
        for _ in range(config.epochs):
            for index in torch.randperm(batch).split(minibatch):
                out = ppo_step(model, loss_fn, {k: v[index] for k, v in data.items()}, step)
                optimizer.zero_grad()
                out.loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                step += 1
        ent_coef = -float(out.weights["entropy"])  # minimize … - ent_coef * entropy
        if not quiet and (iteration % log_every == 0 or iteration == iterations - 1):
            episodes = rollouts.finished
            mean_return = f"{np.mean(episodes):6.1f}" if episodes else "   n/a"
            print(
                f"iter {iteration:4d}  env steps {(iteration + 1) * batch:7d}  "
                f"episode return {mean_return}  "
                f"policy {float(out.terms['policy']):+.4f}  "
                f"value {float(out.terms['value']):8.3f}  "
                f"entropy {float(out.terms['entropy']):.3f}  ent_coef {ent_coef:.5f}  "
                f"clip_frac {float(out.metrics['clip_frac']):.3f}  "
                f"approx_kl {float(out.metrics['approx_kl']):+.5f}",
                flush=True,
            )
    last = rollouts.finished
    return Result(
        eval_return=evaluate(model, config.eval_episodes, seed=10_000 + config.seed),
        first_returns=first_returns,
        last_returns=float(np.mean(last)) if last else float(config.rollout_steps),
        updates=step,
        ent_coef_last=ent_coef,
        seconds=time.perf_counter() - started,
    )


def ppo_step(
    model: ActorCritic, loss_fn: torch.nn.Module, mb: dict[str, torch.Tensor], step: int
) -> lossdsl.LossOutput:
    """One minibatch through the spec: a batch of one-step sequences."""
    advantages = mb["advantages"]
    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    logits, values = model(mb["obs"])
    as_sequences = {
        "logits": logits.unsqueeze(1),  # float[B, T=1, V=2]
        "values": values.unsqueeze(1),
        "actions": mb["actions"].unsqueeze(1),
        "old_logp": mb["old_logp"].unsqueeze(1),
        "old_values": mb["old_values"].unsqueeze(1),
        "advantages": advantages.unsqueeze(1),
        "returns": mb["returns"].unsqueeze(1),
        "mask": torch.ones(len(advantages), 1, dtype=torch.bool),
    }
    return loss_fn(**as_sequences, step=step)


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="a few seconds, for the tests")
    parser.add_argument("--seed", type=int, default=FULL.seed, help="of torch, numpy, the envs")
    args = parser.parse_args(argv)
    config = replace(FAST if args.fast else FULL, seed=args.seed)
    print(
        f"PPO on CartPole-v1 with lossdsl's `ppo` spec: {config.total_steps} environment "
        f"steps, {config.num_envs} environments",
        flush=True,
    )
    result = train(config, log_every=4 if args.fast else 20)
    print(
        f"evaluation: mean return {result.eval_return:.1f} over {config.eval_episodes} greedy "
        f"episodes (first rollout's episodes: {result.first_returns:.1f}); "
        f"{result.updates} optimizer steps in {result.seconds:.0f} s"
    )
    return result


if __name__ == "__main__":
    main()
