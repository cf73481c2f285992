"""Config mechanism: unknown keys and wrong types are errors naming the key; overrides; round trip."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from meshfit.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict


@dataclasses.dataclass(frozen=True)
class Weights:
    silhouette: float = 1.0
    laplacian: float = 0.0


@dataclasses.dataclass(frozen=True)
class Stage:
    steps: int = 100
    learning_rate: float = 0.01
    weights: Weights = Weights()


@dataclasses.dataclass(frozen=True)
class Config:
    model: Literal["free_mesh", "blendshapes", "rigid"] = "free_mesh"
    seed: int = 0
    near: float | None = None
    verbose: bool = True
    stages: tuple[Stage, ...] = (Stage(),)


def test_defaults_and_nested_values():
    cfg = from_dict(Config, {"model": "rigid", "stages": [{"steps": 5}, {"weights": {"laplacian": 2}}]})
    assert cfg.model == "rigid" and cfg.stages[0].steps == 5 and cfg.stages[1].weights.laplacian == 2.0
    assert isinstance(cfg.stages[1].weights.laplacian, float) and cfg.near is None
    assert from_dict(Config, to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "data, message",
    [
        ({"modle": "rigid"}, r"config\.modle: unknown key; expected one of \['model', 'near'"),
        (
            {"stages": [{"weights": {"silhouete": 1}}]},
            r"config\.stages\[0\]\.weights\.silhouete: unknown key",
        ),
        ({"seed": "3"}, r"config\.seed: expected an integer; got '3'"),
        ({"seed": 1.5}, r"config\.seed: expected an integer"),
        ({"verbose": 1}, r"config\.verbose: expected true or false"),
        ({"model": "mesh"}, r"config\.model: expected one of \['free_mesh', 'blendshapes', 'rigid'\]"),
        ({"near": "close"}, r"config\.near: expected float or null"),
        ({"stages": {"steps": 3}}, r"config\.stages: expected a list"),
        ([1, 2], r"config: expected a mapping"),
    ],
)
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Config, data)


def test_overrides_on_resolved_defaults(tmp_path):
    (tmp_path / "c.yaml").write_text("model: rigid\nstages:\n  - steps: 10\n  - steps: 20\n")
    resolved = to_dict(from_dict(Config, load_yaml(tmp_path / "c.yaml")))
    data = apply_overrides(resolved, ["stages.1.learning_rate=0.5", "seed=7", "stages.0.weights.laplacian=3"])
    cfg = from_dict(Config, data)
    assert cfg.seed == 7 and cfg.stages[1].learning_rate == 0.5 and cfg.stages[0].weights.laplacian == 3.0
    with pytest.raises(ConfigError, match="stages.5 is not an index of a 2-item list"):
        apply_overrides(resolved, ["stages.5.steps=1"])
    with pytest.raises(ConfigError, match="expected key.path=value"):
        apply_overrides(resolved, ["seed"])
    with pytest.raises(ConfigError, match=r"config\.sed: unknown key"):
        from_dict(Config, apply_overrides(resolved, ["sed=1"]))
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
