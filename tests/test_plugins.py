"""Plugin manager: every hook works and is tested/documented; broken plugins are isolated."""
from __future__ import annotations

import ast
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from opensim_biopose import hookimpl, hookspecs
from opensim_biopose.cli.main import main
from opensim_biopose.errors import InputError
from opensim_biopose.plugins import BLOCK_ENV, KINDS, build_plugin_manager, get_registry, reset_registry

ROOT = Path(__file__).resolve().parents[1]


def hook_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if n.startswith("register_")
                  and hasattr(getattr(hookspecs, n), "opensim_biopose_spec"))


def plugin_registering(kind: str, *names: str, value: object = None) -> types.SimpleNamespace:
    """An in-process plugin whose register_<kind> registers ``names`` (factory returns value)."""
    def hook(register):  # type: ignore[no-untyped-def]
        for n in names:
            register(n, lambda **opts: value if value is not None else opts)
    ns = types.SimpleNamespace(__name__=f"test_{kind}_plugin")
    setattr(ns, f"register_{kind}", hookimpl(hook, specname=f"register_{kind}"))
    return ns


# --- one test per hook (test_plugin_hooks_have_tests checks the names) -------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_a_hook(kind: str) -> None:
    assert f"register_{kind}" in hook_names()


def test_hook_register_detectors() -> None:
    from opensim_biopose.detect.types import Detector, FrameDetection, KeypointLayout

    class Centre(Detector):
        layout = KeypointLayout("one", ("centre",))

        def detect(self, frame_bgr: np.ndarray, time: float) -> FrameDetection | None:
            h, w = frame_bgr.shape[:2]
            return FrameDetection(time, np.array([[w / 2, h / 2]]), np.ones(1), np.array([0, 0, w, h], float))

    _, reg = build_plugin_manager((plugin_registering("detectors", "centre", value=Centre()),))
    det = reg.create("detectors", "centre")
    found = det.detect(np.zeros((40, 60, 3), np.uint8), 0.0)
    np.testing.assert_allclose(found.xy, [[30, 20]])
    assert reg.get("detectors", "centre").origin == "in-process"


def test_hook_register_keypoint_sources() -> None:
    _, reg = build_plugin_manager((plugin_registering("keypoint_sources", "my-json"),))
    assert reg.create("keypoint_sources", "my-json", fps=25.0) == {"fps": 25.0}


def test_hook_register_body_models() -> None:
    _, reg = build_plugin_manager((plugin_registering("body_models", "test-body"),))
    assert reg.create("body_models", "test-body", height=0.5) == {"height": 0.5}


def test_hook_register_mesh_backends() -> None:
    _, reg = build_plugin_manager((plugin_registering("mesh_backends", "test-mesh"),))
    assert reg.get("mesh_backends", "test-mesh").plugin == "test_mesh_backends_plugin"


def test_hook_register_marker_sets() -> None:
    _, reg = build_plugin_manager((plugin_registering("marker_sets", "test-markers"),))
    assert "test-markers" in reg.names("marker_sets")


def test_plugin_hooks_have_tests() -> None:
    """Every hookspec has a test named test_hook_<hook> in tests/test_plugins*.py."""
    tested = set()
    for file in (ROOT / "tests").glob("test_plugins*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_hook_"):
                tested.add(node.name[len("test_hook_"):])
    assert set(hook_names()) - tested == set()


def test_plugin_hooks_are_documented() -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text()
    missing = [h for h in hook_names() if f"### `{h}`" not in docs]
    assert missing == []


# --- loading rules ------------------------------------------------------------------


def test_duplicate_name_is_rejected_and_reported() -> None:
    first = plugin_registering("body_models", "dup", value="first")
    second = plugin_registering("body_models", "dup", value="second")
    second.__name__ = "second_plugin"
    _, reg = build_plugin_manager((first, second))
    assert reg.create("body_models", "dup") == "first"
    assert "already registered" in reg.failures["second_plugin"]


def test_detector_and_source_names_share_one_namespace() -> None:
    det = plugin_registering("detectors", "same")
    src = plugin_registering("keypoint_sources", "same")
    _, reg = build_plugin_manager((det, src))
    assert "same" in reg.names("detectors") and "same" not in reg.names("keypoint_sources")
    assert src.__name__ in reg.failures


def test_raising_plugin_is_reported_and_others_load() -> None:
    def boom(register):  # type: ignore[no-untyped-def]
        register("half", lambda: 1)
        raise RuntimeError("exploded while registering")
    bad = types.SimpleNamespace(__name__="bad_plugin", register_body_models=hookimpl(boom))
    good = plugin_registering("body_models", "fine", value="ok")
    _, reg = build_plugin_manager((bad, good))
    assert reg.create("body_models", "fine") == "ok"
    assert "exploded while registering" in reg.failures["bad_plugin"]
    with pytest.raises(InputError, match="bad_plugin"):
        reg.get("body_models", "missing-one")


def test_misspelt_hook_is_caught_by_check_pending() -> None:
    typo = types.SimpleNamespace(__name__="typo_plugin", register_detector=hookimpl(lambda register: None))
    _, reg = build_plugin_manager((typo, plugin_registering("detectors", "other")))
    assert "register_detector" in reg.failures["typo_plugin"]
    assert "other" in reg.names("detectors")


def test_unknown_name_lists_available() -> None:
    _, reg = build_plugin_manager((plugin_registering("mesh_backends", "alpha", "beta"),))
    with pytest.raises(InputError, match="unknown mesh backend 'gamma'.*alpha, beta"):
        reg.get("mesh_backends", "gamma")


# --- entry points, blocking, CLI ----------------------------------------------------

ENTRY_PLUGIN = '''
from opensim_biopose import hookimpl

@hookimpl
def register_marker_sets(register):
    register("ep-markers", lambda **o: "from entry point")
'''


def install_entry_point_plugin(root: Path, module: str, source: str, dist: str = "biopose-eptest") -> None:
    """A real installed distribution: module + dist-info with an opensim_biopose entry point."""
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3.1\n")
    (info / "entry_points.txt").write_text(f"[opensim_biopose]\n{module} = {module}\n")


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    reset_registry()
    yield monkeypatch
    reset_registry()


def test_entry_point_plugin_is_discovered(tmp_path: Path, clean_registry: pytest.MonkeyPatch) -> None:
    install_entry_point_plugin(tmp_path, "biopose_eptest_plugin", ENTRY_PLUGIN)
    clean_registry.syspath_prepend(str(tmp_path))
    reg = get_registry()
    entry = reg.get("marker_sets", "ep-markers")
    assert (entry.plugin, entry.version, entry.origin) == ("biopose_eptest_plugin", "0.3.1", "entry point")
    assert entry.factory() == "from entry point"


def test_broken_entry_point_is_reported_by_name(tmp_path: Path, clean_registry: pytest.MonkeyPatch) -> None:
    install_entry_point_plugin(tmp_path, "biopose_broken_plugin", "import a_module_that_does_not_exist\n",
                               dist="biopose-broken")
    clean_registry.syspath_prepend(str(tmp_path))
    reg = get_registry()
    assert "a_module_that_does_not_exist" in reg.failures["biopose_broken_plugin"]
    assert "mediapipe" in reg.names("detectors")   # the rest still loads


@pytest.mark.parametrize("blocked", ["biopose_eptest_plugin", "biopose-eptest"])
def test_block_env_var_keeps_plugin_out(tmp_path: Path, clean_registry: pytest.MonkeyPatch, blocked: str) -> None:
    install_entry_point_plugin(tmp_path, "biopose_eptest_plugin", ENTRY_PLUGIN)
    clean_registry.syspath_prepend(str(tmp_path))
    clean_registry.setenv(BLOCK_ENV, f"something_else, {blocked}")
    reg = get_registry()
    assert "ep-markers" not in reg.names("marker_sets")
    assert "biopose_eptest_plugin" not in reg.failures


def test_plugins_command_lists_versions_and_origin(tmp_path: Path, clean_registry: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    install_entry_point_plugin(tmp_path, "biopose_eptest_plugin", ENTRY_PLUGIN)
    clean_registry.syspath_prepend(str(tmp_path))
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "ep-markers" in out and "0.3.1 (entry point)" in out
    assert "mediapipe" in out and "openpose-json" in out


def test_reference_plugins_have_own_packaging() -> None:
    for name in ("biopose-mediapipe", "biopose-precomputed"):
        cfg = (ROOT / "plugins" / name / "setup.cfg").read_text()
        assert "opensim_biopose =" in cfg
        assert (ROOT / "plugins" / name / "pyproject.toml").exists()
    assert "mediapipe==0.10.14" in (ROOT / "plugins" / "biopose-mediapipe" / "setup.cfg").read_text()


def test_mediapipe_plugin_never_selects_downloading_complexity() -> None:
    from biopose_mediapipe import detector

    assert detector.MODEL_COMPLEXITY == 1
    src = Path(detector.__file__).read_text()
    assert "model_complexity=MODEL_COMPLEXITY" in src


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
