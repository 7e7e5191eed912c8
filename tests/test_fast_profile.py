"""selecting the export profile: nesting, errors, one per thread

That every fast-profile file decodes to the reference's pixels (png, svg, svgz) is `test_methods`.
"""

import threading

import pytest

from pattern_lens import export_profile


def test_profile_selection_and_errors():
    assert export_profile() == "exact"
    with export_profile("fast"):
        assert export_profile() == "fast"
        with export_profile("exact"):
            assert export_profile() == "exact"
        assert export_profile() == "fast"
    assert export_profile() == "exact"
    with pytest.raises(ValueError, match="unknown export profile 'quick'"):
        with export_profile("quick"):
            pass


def test_profile_is_per_thread():
    seen = {}
    inside, release = threading.Event(), threading.Event()

    def worker():
        with export_profile("fast"):
            inside.set()
            release.wait(5)
            seen["worker"] = export_profile()

    thread = threading.Thread(target=worker)
    thread.start()
    inside.wait(5)
    seen["main"] = export_profile()
    release.set()
    thread.join()
    assert seen == {"main": "exact", "worker": "fast"}
