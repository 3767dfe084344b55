"""The Dagster UI as a data engineer uses it (DESIGN.md "Who uses it and how"), in a real browser.

A real ``dagster dev`` on 127.0.0.1 (temporary DAGSTER_HOME, the ``tiny`` generated sample as
MTVCRAFT_RAW_VIDEOS, a one-node Ray started for it as RAY_ADDRESS), driven by headless Chromium
through Playwright: select the curation assets raw_videos..rejects in the catalog, press
"Materialize selected", wait for the run over GraphQL, then open the lineage graph and the
``poses`` asset page and check that its metadata shows num_rows, lance_version and the preview
image (an <img> whose src is a data:image/png). Screenshots go to the test's tmp folder and to
``bench/out/screenshots/`` for people to look at.

Needs Debian's ``chromium`` and PyPI's ``playwright`` (no ``playwright install``: the browser is
the system one); skipped without them, failed under MTVCRAFT_REQUIRE_ALL_TESTS=1 (conftest).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import (
    REPO_ROOT,
    LoopbackRayCluster,
    child_env,
    free_port,
    require_executable,
    require_module,
    start_group,
    stop_group,
    wait_until,
)

from pipeline.core import tables

CURATION = ["raw_videos", "shots", "poses", "subclips", "rejects"]  # clip_scores and later: not needed for the UI check
LOCATION = "assets.definitions"  # `dagster dev -m assets.definitions` names its code location after the module
SCREENSHOTS = REPO_ROOT / "bench" / "out" / "screenshots"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
    if body.get("errors"):
        raise AssertionError(f"GraphQL errors: {body['errors']}")
    return body["data"]


@pytest.fixture(scope="module")
def chromium_path() -> str:
    require_module("playwright.sync_api", "playwright", ".venv/bin/pip install playwright==1.65.2")
    return require_executable("chromium", "chromium", "apt-get install -y chromium")


@pytest.fixture(scope="module")
def dagster_ui(chromium_path, tiny_sample, tmp_path_factory):
    """``dagster dev -h 127.0.0.1 -p <free port>`` on a temporary instance; yields base URL, port, log and work dir.

    Finalizer: SIGTERM to the server's process group (started with ``env --default-signal=INT,TERM``
    so that it obeys), SIGKILL to what is left, then the Ray node."""
    work = tmp_path_factory.mktemp("dagster_ui")
    home = work / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    ray = LoopbackRayCluster(work)
    server = None
    try:
        started = time.monotonic()
        ray.add_node(num_cpus=2, wait=False)  # Ray and Dagster start side by side
        port = free_port()
        env = child_env(DAGSTER_HOME=str(home), MTVCRAFT_DATA_ROOT=str(work / "data"),
                        MTVCRAFT_RAW_VIDEOS=str(tiny_sample.root / "videos"), RAY_ADDRESS=ray.address,
                        DAGSTER_DISABLE_TELEMETRY="1")
        dagster = str(Path(sys.executable).parent / "dagster")
        log = work / "dagster_dev.log"
        server = start_group(["env", "--default-signal=INT,TERM", dagster, "dev", "-h", "127.0.0.1", "-p", str(port),
                              "-m", LOCATION], log, env=env)
        base = f"http://127.0.0.1:{port}"
        ray.wait_ready()
        wait_until(lambda: graphql(base, "{ version }")["version"], 180, "the Dagster webserver (GraphQL { version })",
                   interval=1.0, alive=server, log=log)
        print(f"Ray and dagster dev up after {time.monotonic() - started:.0f} s")
        yield {"base": base, "log": log, "work": work, "port": port}
    finally:
        if server is not None:
            stop_group(server, timeout=30)
        ray.stop()


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def shoot(page, name: str, out: Path) -> Path:
    """Screenshot into the test's folder and a copy under bench/out/screenshots/."""
    path = out / name
    page.screenshot(path=str(path))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SCREENSHOTS / name)
    return path


RUNS = "{ runsOrError { ... on Runs { results { runId status } } } }"
STEP_STATS = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status startTime endTime
  stepStats { stepKey status startTime endTime } } } }"""
LATEST = """query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset {
  assetMaterializations(limit: 1) { runId metadataEntries { label
    ... on IntMetadataEntry { intValue } ... on MarkdownMetadataEntry { mdStr } ... on PathMetadataEntry { path } } } } } }"""


def test_the_webserver_listens_on_loopback_only(dagster_ui):
    import psutil

    listening = {c.laddr.ip for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == dagster_ui["port"]}
    assert listening == {"127.0.0.1"}


def test_materialize_curation_from_the_ui_and_read_the_poses_asset(dagster_ui, browser, tiny_sample, tmp_path):
    base = dagster_ui["base"]
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(60_000)

    # The catalog: tick the curation assets, press "Materialize selected".
    page.goto(f"{base}/assets", wait_until="networkidle")
    for name in CURATION:
        box = page.get_by_test_id(f"checkbox-{name}")
        page.locator("label", has=box).click()  # the input itself is drawn over by its SVG
        assert box.is_checked(), name
    shoot(page, "catalog_selected.png", tmp_path)
    page.get_by_role("button", name="Materialize selected").click()
    # rejects also reads clip_scores, which this fresh instance never materialized: the UI asks first.
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Are you sure?").wait_for()
    assert "clip_scores" in dialog.inner_text()
    dialog.get_by_role("button", name="Confirm").click()
    page.get_by_text("Launched run").wait_for()

    runs = wait_until(lambda: graphql(base, RUNS)["runsOrError"]["results"], 60, "the UI to launch a run",
                      log=dagster_ui["log"])
    run_id = runs[0]["runId"]
    run = wait_until(lambda: (r := graphql(base, STEP_STATS, {"id": run_id})["runOrError"])["status"]
                     in ("SUCCESS", "FAILURE", "CANCELED") and r, 600, f"run {run_id} to finish", interval=3.0,
                     log=dagster_ui["log"])
    print("steps:", {st["stepKey"]: round((st["endTime"] or 0) - (st["startTime"] or 0), 1) for st in run["stepStats"]})
    assert run["status"] == "SUCCESS", run["stepStats"]
    print(f"run took {run['endTime'] - run['startTime']:.0f} s")
    assert {s["stepKey"] for s in run["stepStats"] if s["status"] == "SUCCESS"} >= set(CURATION)
    assert len(runs) == 1  # one click, one run

    # Every selected asset has a materialization from this run whose row count and Lance version are the
    # table's own, read back from the data root.
    metadata = {}
    for name in CURATION:
        latest = graphql(base, LATEST, {"key": {"path": [name]}})["assetOrError"]["assetMaterializations"][0]
        assert latest["runId"] == run_id, name
        metadata[name] = entries = {e["label"]: e for e in latest["metadataEntries"]}
        uri = entries["table_uri"]["path"]
        assert uri == str(dagster_ui["work"] / "data" / "tables" / f"{name}.lance"), uri
        assert entries["num_rows"]["intValue"] == tables.count(uri), name
        assert entries["lance_version"]["intValue"] == tables.version(uri) >= 1, name
    assert metadata["poses"]["num_rows"]["intValue"] == sum(v.num_frames for v in tiny_sample.videos)
    assert metadata["poses"]["preview_image"]["mdStr"].startswith("![poses](data:image/png;base64,")

    # The lineage graph of the curation group, after the run.
    page.goto(f"{base}/locations/{LOCATION}/asset-groups/curation/lineage", wait_until="networkidle")
    for name in CURATION:
        page.get_by_text(name, exact=True).first.wait_for()
    time.sleep(1.0)  # let the graph finish its layout animation
    shoot(page, "asset_graph.png", tmp_path)

    # The poses asset page: metadata table with num_rows and lance_version, and the preview image.
    page.goto(f"{base}/assets/poses", wait_until="networkidle")
    table_row = {}
    for key in ("num_rows", "lance_version", "preview_image"):
        table_row[key] = page.locator("tr", has=page.get_by_text(key, exact=True))
        table_row[key].first.wait_for()
    assert int(table_row["num_rows"].first.locator("td").last.inner_text()) == metadata["poses"]["num_rows"]["intValue"]
    assert int(table_row["lance_version"].first.locator("td").last.inner_text()) == metadata["poses"]["lance_version"]["intValue"]
    shoot(page, "poses_asset.png", tmp_path)
    table_row["preview_image"].first.get_by_text("[Show Markdown]").click()
    image = page.locator("img[src^='data:image/png']").first
    image.wait_for()
    width, height, complete = image.evaluate("e => [e.naturalWidth, e.naturalHeight, e.complete]")
    assert complete and width > 100 and height > 50  # a decoded picture, not a broken-image icon
    time.sleep(0.5)
    shoot(page, "poses_preview.png", tmp_path)
    page.close()
