"""Every dictionary transform of the package follows MONAI's conventions."""

import inspect

from monai.transforms import MapTransform, Transform

import transforms


def _classes():
    return [
        obj for _, obj in inspect.getmembers(transforms, inspect.isclass) if obj.__module__.startswith("transforms")
    ]


def test_package_exports_transforms():
    assert _classes(), "the transforms package exports no transform"


def test_map_transforms_have_array_twin_and_docs():
    for cls in _classes():
        assert cls.__doc__ and cls.__doc__.strip(), f"{cls.__name__} has no docstring"
        assert cls.__name__ in transforms.__all__, f"{cls.__name__} is not in transforms.__all__"
        if issubclass(cls, MapTransform):
            assert cls.__name__.endswith("d"), f"{cls.__name__}: dictionary transforms end in 'd'"
            twin = getattr(transforms, cls.__name__[:-1], None)
            assert twin is not None and issubclass(twin, Transform), f"{cls.__name__} lacks its array twin"
            assert cls.backend == twin.backend, f"{cls.__name__} does not copy its twin's backend"
            params = inspect.signature(cls.__init__).parameters
            assert "keys" in params and "allow_missing_keys" in params, f"{cls.__name__}: keys/allow_missing_keys"
