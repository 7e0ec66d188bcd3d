"""One registry per kind of option (optimizer, scheduler, loss, callback): each option is a schema
class registered under the name its YAML file uses, and names the Keras class it becomes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from omegaconf import DictConfig, OmegaConf

from mnistlab.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Schema classes by name, in the order they were registered (the order errors list them in)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def add(cls: type[T]) -> type[T]:
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._classes[name] = cls
            return cls

        return add

    def names(self) -> list[str]:
        return list(self._classes)

    def schema(self, name: Any, key: str) -> type[T]:
        """The class registered as ``name``, or a ConfigError on ``key`` listing the choices."""
        if not isinstance(name, str) or name not in self._classes:  # a mapping or a list would not even hash
            raise ConfigError(key, f"unknown {self.kind}; choose one of {', '.join(self._classes)}", name)
        return self._classes[name]

    def instance(self, node: Mapping[str, Any], name: str | None = None) -> T:
        """The option as its schema object (with its methods): from a validated config node, or
        from a plain mapping such as ``{"name": "adam", "lr": 0.01}``."""
        if (
            isinstance(node, DictConfig)
            and isinstance(OmegaConf.get_type(node), type)
            and OmegaConf.get_type(node) in self._classes.values()
        ):
            return OmegaConf.to_object(node)
        values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
        return self._classes[name or values["name"]](**values)
