"""Head specifications in recipes and adapter files, and building heads on a base model."""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import asdict, dataclass, field

from .._compat import torch
from ..core.facts import check_e0s_option, feature_irreps
from ..ranges import check_field, ranged
from ..typed import check_type
from .base import Head, HeadError
from .energy import EnergyHead
from .magmom import CollinearMagmomHead, VectorMagmomHead

HEAD_CLASSES = {cls.kind: cls for cls in (EnergyHead, CollinearMagmomHead, VectorMagmomHead)}
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RESERVED_NAMES = {"foundation", "default", "Default"}

# recipe keys each kind accepts besides name/kind/seed
KIND_KEYS = {
    "energy": {
        "energy_key",
        "forces_key",
        "stress_key",
        "virials_key",
        "energy_weight",
        "forces_weight",
        "stress_weight",
        "E0s",
    },
    "magmom": {"magmom_key", "total_key", "magmoms_weight", "hidden", "constrain_total"},
    "vector_magmom": {"magmom_key", "magmoms_weight", "hidden", "channels"},
}
ARCHITECTURE_KEYS = ("hidden", "channels", "constrain_total")


@dataclass
class HeadConfig:
    """One recipe ``heads:`` entry: what the head is, which labels train it, with what weight."""

    name: str
    kind: str
    energy_key: str = "REF_energy"
    forces_key: str = "REF_forces"
    stress_key: str = "REF_stress"
    virials_key: str = "REF_virials"
    magmom_key: str = "REF_magmoms"
    total_key: str = "REF_total_magmom"
    energy_weight: float = field(default=1.0, metadata=ranged(ge=0))
    forces_weight: float = field(default=10.0, metadata=ranged(ge=0))
    stress_weight: float = field(default=1.0, metadata=ranged(ge=0))
    magmoms_weight: float = field(default=1.0, metadata=ranged(ge=0))
    E0s: object = "foundation"
    hidden: int = field(default=32, metadata=ranged(ge=1))
    channels: int = field(default=8, metadata=ranged(ge=1))
    constrain_total: bool = False
    seed: int = field(default=0, metadata=ranged(ge=0))

    @property
    def property(self) -> str:
        return HEAD_CLASSES[self.kind].property

    def options(self) -> dict:
        """Architecture options (what the adapter file needs to rebuild the head)."""
        allowed = KIND_KEYS[self.kind]
        return {k: getattr(self, k) for k in ARCHITECTURE_KEYS if k in allowed}

    def to_dict(self) -> dict:
        allowed = KIND_KEYS[self.kind] | {"name", "kind", "seed"}
        return {k: v for k, v in asdict(self).items() if k in allowed}


def head_config_from_dict(data, where: str) -> HeadConfig:
    """Validate one ``heads:`` entry; errors name ``where`` (e.g. ``heads[0].kind``)."""
    if not isinstance(data, dict):
        raise HeadError(f"{where}: expected a mapping with name and kind")
    name, kind = data.get("name"), data.get("kind")
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or name in RESERVED_NAMES:
        raise HeadError(
            f"{where}.name: {name!r} must be an identifier (letters, digits, _) other than "
            f"{', '.join(sorted(RESERVED_NAMES))}"
        )
    if kind not in HEAD_CLASSES:
        raise HeadError(f"{where}.kind: {kind!r} is not one of {', '.join(HEAD_CLASSES)}")
    allowed = KIND_KEYS[kind] | {"name", "kind", "seed"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise HeadError(
            f"{where}: key(s) {unknown} do not apply to kind {kind}; valid keys: {', '.join(sorted(allowed))}"
        )
    hints = typing.get_type_hints(HeadConfig)
    fields = {f.name: f for f in dataclasses.fields(HeadConfig)}
    values = {}
    for key, value in data.items():
        value = check_type(value, hints[key], f"{where}.{key}", HeadError)
        check_field(fields[key], value, f"{where}.{key}", HeadError)  # the range its field declares
        values[key] = value
    if kind == "energy":
        problem = check_e0s_option(values.get("E0s", "foundation"), f"{where}.E0s")
        if problem:
            raise HeadError(problem)
    return HeadConfig(**values)


def build_head(name: str, kind: str, options: dict, plain_model: torch.nn.Module, *, seed: int = 0) -> Head:
    """A new head on ``plain_model`` (an unwrapped base model of any backend), in its dtype and device."""
    if kind not in HEAD_CLASSES:
        raise HeadError(f"head {name!r}: unknown kind {kind!r}; known: {', '.join(HEAD_CLASSES)}")
    param = next(plain_model.parameters())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "energy":
            head = EnergyHead(name, options, model=plain_model)
        else:
            head = HEAD_CLASSES[kind](
                name, options, irreps_list=feature_irreps(plain_model), num_elements=len(plain_model.atomic_numbers)
            )
    return head.to(dtype=param.dtype, device=param.device)


def build_from_config(config: HeadConfig, plain_model) -> Head:
    return build_head(config.name, config.kind, config.options(), plain_model, seed=config.seed)
