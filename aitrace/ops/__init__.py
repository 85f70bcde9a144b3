"""Every primitive, defined once per op family module. Each module lists its user-facing
functions in `__all__`; this package finds the modules itself, so adding a family touches no
central list."""
import importlib
import pkgutil

__all__: list[str] = []
for _m in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    _mod = importlib.import_module(f"{__name__}.{_m}")
    for _name in getattr(_mod, "__all__", ()):
        globals()[_name] = getattr(_mod, _name)
        __all__.append(_name)
