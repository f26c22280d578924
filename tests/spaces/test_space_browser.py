"""The Space in a real browser: headless Chromium drives every tab of spaces/app.py served on 127.0.0.1.

Needs the `playwright` Python package (no browser download: it launches Debian's /usr/bin/chromium) and
the bundled checkpoints. Screenshots of each tab go to outputs/space_screenshots/<tab>.png.
"""

import importlib.util
import os
import shutil
import socket

import numpy as np
import PIL.Image
import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no usage reports
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

# Gradio's queue calls pandas options that pandas 3 deprecates; not this code's to fix
pytestmark = [
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPACE = os.path.join(ROOT, "spaces")
SHOTS = os.path.join(ROOT, "outputs", "space_screenshots")
TIMEOUT_MS = 60_000

spec = importlib.util.spec_from_file_location("space_app_browser", os.path.join(SPACE, "app.py"))
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)


def example(prefix: str) -> str:
    return os.path.join(SPACE, "examples", f"{prefix}_0.png")


@pytest.fixture(scope="module")
def models():
    return app.load_models(os.path.join(SPACE, "checkpoints"))


@pytest.fixture(scope="module")
def url(models):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = app.build_demo(models)
    demo.queue(default_concurrency_limit=1).launch(
        server_name="127.0.0.1",
        server_port=port,
        max_file_size=app.MAX_FILE_SIZE,
        prevent_thread_lock=True,
        quiet=True,
    )
    threads = torch.get_num_threads()  # the app's events set TORCH_THREADS
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, url):
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    yield page
    page.close()


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def upload(page, elem_id: str, path: str) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files(path)
    page.locator(f"#{elem_id} img").first.wait_for(state="attached")


def loaded_image_size(page, selector: str) -> tuple[int, int]:
    """Natural size of the first <img> under `selector` once the browser has decoded it."""
    image = page.locator(f"{selector} img").first
    image.wait_for()
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    return tuple(image.evaluate("(img) => [img.naturalWidth, img.naturalHeight]"))


def screenshot(page, tab: str) -> None:
    os.makedirs(SHOTS, exist_ok=True)
    path = os.path.join(SHOTS, f"{tab}.png")
    page.screenshot(path=path, full_page=True)
    print(f"screenshot: {path}")


@pytest.fixture(scope="module")
def coffee(tmp_path_factory):
    """scikit-image's 600 x 400 coffee photo as a PNG (downscaled by the Space to 512 px)."""
    from skimage import data

    path = tmp_path_factory.mktemp("space") / "coffee.png"
    PIL.Image.fromarray(data.coffee()).save(path)
    return str(path)


def test_fido_tab_shows_ssr_and_sdr_overlays(page, models, coffee):
    probs = app.explain_fido(models, coffee, steps=1)[2]
    predicted = max(probs, key=probs.get)
    open_tab(page, "FIDO saliency")
    upload(page, "fido-image", coffee)
    page.locator("#fido-steps input[type=number]").fill("20")
    page.locator("#fido-steps input[type=number]").press("Enter")
    page.locator("#fido-run").click()
    sync_api.expect(page.locator("#fido-status")).to_contain_text("Explained", timeout=TIMEOUT_MS)
    assert loaded_image_size(page, "#fido-ssr") == (app.DISPLAY_SIDE, app.DISPLAY_SIDE)
    assert loaded_image_size(page, "#fido-sdr") == (app.DISPLAY_SIDE, app.DISPLAY_SIDE)
    sync_api.expect(page.locator("#fido-probs")).to_contain_text(predicted)
    sync_api.expect(page.locator("#fido-status")).to_contain_text("20 FIDO steps")
    sync_api.expect(page.locator("#fido-status")).to_contain_text("600 x 400, downscaled to 512 x 341")
    screenshot(page, "fido")


def test_pat_tab_shows_scores_of_plain_pat_i_and_pat_t(page, models):
    open_tab(page, "PAT multi-label")
    upload(page, "pat-image", example("pat"))
    page.locator("#pat-run").click()
    sync_api.expect(page.locator("#pat-status")).to_contain_text("PAT-T", timeout=TIMEOUT_MS)
    table = page.locator("#pat-table")
    for header in ("plain", "plain + PAT-I", "PAT-T", *models.pat_plain.labels):
        sync_api.expect(table).to_contain_text(header)
    for elem_id in ("pat-plain", "pat-i", "pat-t"):
        sync_api.expect(page.locator(f"#{elem_id}")).to_contain_text("%")
    screenshot(page, "pat")


def test_cgn_tab_generates_n_images_of_the_picked_classes(page, models):
    names = app.class_names(models.cgn)
    open_tab(page, "CGN counterfactuals")
    page.locator("#cgn-shape input").click()
    page.get_by_role("option", name=names[4], exact=True).click()
    page.locator("#cgn-n input[type=number]").fill("6")
    page.locator("#cgn-n input[type=number]").press("Enter")
    page.locator("#cgn-run").click()
    sync_api.expect(page.locator("#cgn-status")).to_contain_text("6 images", timeout=TIMEOUT_MS)
    sync_api.expect(page.locator("#cgn-status")).to_contain_text(f"shape of {names[4]}")
    images = page.locator("#cgn-gallery img")
    sync_api.expect(images).to_have_count(6)
    assert loaded_image_size(page, "#cgn-gallery")[0] > 0
    assert loaded_image_size(page, "#cgn-strip") == (4 * app.DISPLAY_SIDE // 2, app.DISPLAY_SIDE // 2)
    screenshot(page, "cgn")


def test_robust_tab_compares_two_classifiers(page, models):
    first, second = app.ROBUST_DEFAULTS
    probs = app.compare_classifiers(models, example("robust"), first, second)[:2]
    open_tab(page, "Robust fine-tuning")
    upload(page, "robust-image", example("robust"))
    page.locator("#robust-run").click()
    sync_api.expect(page.locator("#robust-status")).to_contain_text("they", timeout=TIMEOUT_MS)
    for elem_id, p in zip(("robust-label-a", "robust-label-b"), probs, strict=True):
        sync_api.expect(page.locator(f"#{elem_id}")).to_contain_text(max(p, key=p.get))
    sync_api.expect(page.locator("#robust-table")).to_contain_text(second)
    screenshot(page, "robust")


def test_a_corrupt_upload_shows_a_message_not_a_traceback(page, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(0).bytes(200))
    open_tab(page, "FIDO saliency")
    page.locator("#fido-image input[type=file]").set_input_files(str(broken))
    page.locator("#fido-run").click()
    message = page.get_by_text("broken.png is not an image that can be read")
    sync_api.expect(message.first).to_be_visible(timeout=TIMEOUT_MS)
    assert "Traceback" not in page.content()
    assert "/tmp" not in message.first.inner_text()  # no server paths
    page.wait_for_timeout(600)  # the toast's fade-in, for the screenshot
    screenshot(page, "bad_upload")
