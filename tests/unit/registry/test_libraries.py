"""Library versions: recorded as run params at registration and compared by `tunepipe reproduce`."""

from __future__ import annotations

import platform
from importlib.metadata import version

from pipeline_lib.registry.libraries import differences, library_params, library_versions, recorded_libraries


def test_versions_of_this_environment_round_trip_through_params():
    found = library_versions()
    assert found["python"] == platform.python_version() and found["torch"] == version("torch")
    params = library_params() | {"resolved.device": "cpu"}
    assert recorded_libraries(params) == found


def test_differences_name_each_changed_or_one_sided_library():
    recorded = {"python": "3.11.9", "torch": "2.12.0", "peft": "0.13.0"}
    here = {"python": "3.11.9", "torch": "2.13.0", "numpy": "2.1.0"}
    assert differences(recorded, here) == {
        "numpy": (None, "2.1.0"),
        "peft": ("0.13.0", None),
        "torch": ("2.12.0", "2.13.0"),
    }
    assert differences(here, here) == {}
