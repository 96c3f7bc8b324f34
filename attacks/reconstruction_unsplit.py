"""UnSplit (Erdogan, Kupcu and Cicek, "UnSplit: Data-Oblivious Model Inversion, Model Stealing, and
Label Inference Attacks Against Split Learning", WPES 2022): query-free input reconstruction.

The server knows only the client segment's architecture. It starts from a randomly initialized
surrogate of that segment and alternates two minimizations of ||f'(x') - z||^2 (+ TV prior on x'):
over the inputs x' with the surrogate fixed, then over the surrogate's weights with x' fixed.
Recognizable reconstructions are reported at shallow cuts only.
"""

from __future__ import annotations

import copy

import torch

from secsplit.attacks.base import ATTACKS, ThreatModel
from secsplit.attacks.reconstruction_base import ReconstructionAttack, relative_mse, reset_parameters, total_variation
from secsplit.errors import ConfigError


@ATTACKS.register("unsplit")
class UnSplit(ReconstructionAttack):
    """UnSplit (Erdogan et al.): jointly optimize inputs and a surrogate client segment, architecture only.

    Args:
        rounds: alternations between the input and the surrogate.
        input_steps, model_steps: Adam steps on the inputs / on the surrogate per round.
        lr_input, lr_model: their learning rates.
        tv_weight: weight of the total-variation prior.
        targets, max_targets, phase, seed, attacker: see :class:`ReconstructionAttack`.
    """

    name = "unsplit"
    threat_model = ThreatModel(attacker="server", behaviour="honest-but-curious", knows=("client-architecture",),
                               target="inputs")
    search_space = {"tv_weight": [0.01, 0.05, 0.2], "rounds": [20, 40], "lr_input": [0.02, 0.05]}
    tuning_trials = 6

    def __init__(self, *, rounds: int = 20, input_steps: int = 50, model_steps: int = 50, lr_input: float = 0.05,
                 lr_model: float = 1e-3, tv_weight: float = 0.05, targets: torch.Tensor | None = None,
                 max_targets: int = 32, phase: str = "eval", seed: int = 0,
                 attacker: str | None = None) -> None:
        super().__init__(targets=targets, max_targets=max_targets, phase=phase, seed=seed, attacker=attacker)
        if min(rounds, input_steps, model_steps) < 1 or lr_input <= 0 or lr_model <= 0 or tv_weight < 0:
            raise ConfigError(f"{self.name} needs rounds/steps >= 1, learning rates > 0 and tv_weight >= 0")
        self.rounds, self.input_steps, self.model_steps = rounds, input_steps, model_steps
        self.lr_input, self.lr_model, self.tv_weight = lr_input, lr_model, tv_weight

    def params(self) -> dict:
        return {"rounds": self.rounds, "input_steps": self.input_steps, "model_steps": self.model_steps,
                "lr_input": self.lr_input, "lr_model": self.lr_model, "tv_weight": self.tv_weight}

    def reconstruct(self, z):
        # the architecture only: a copy of the client segment with every weight re-drawn
        surrogate = reset_parameters(copy.deepcopy(self.topology.segments[0]), self.seed).to(z.device).eval()
        w = torch.zeros((z.shape[0], *self.input_shape), device=z.device, requires_grad=True)
        input_opt = torch.optim.Adam([w], lr=self.lr_input)
        model_opt = torch.optim.Adam(surrogate.parameters(), lr=self.lr_model)

        def objective(x):
            return (relative_mse(surrogate(x), z) + self.tv_weight * total_variation(x)).sum()

        history = []
        for _ in range(self.rounds):
            surrogate.requires_grad_(False)
            for _ in range(self.input_steps):
                input_opt.zero_grad(set_to_none=True)
                objective(torch.sigmoid(w)).backward()
                input_opt.step()
            surrogate.requires_grad_(True)
            x = torch.sigmoid(w).detach()
            for _ in range(self.model_steps):
                model_opt.zero_grad(set_to_none=True)
                loss = objective(x)
                loss.backward()
                model_opt.step()
            history.append(float(loss.detach()) / z.shape[0])
        return torch.sigmoid(w).detach(), {"loss_per_round": history}
