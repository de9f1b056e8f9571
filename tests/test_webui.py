"""The web page at ``GET /``, driven in a real headless Chromium (Debian's, through selenium).

Every browser test serves a real converted model (the int8 TFLite artifact a Pi would
serve) and checks what the page shows against what the library itself answers for
the same input: a drawn MNIST digit (its canvas, run through the command line's
digit preprocessing), uploaded and dropped images, a camera frame, a feature row. Each
also fails on any console error and on any request to another origin than the server.
Screenshots at desktop and phone width go to a ``webui-screenshots`` test directory.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import shutil
import time
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.pointer_input import PointerInput
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

import edge_runtime
from edge_runtime.images import load_image
from edge_runtime.sample_set import load_samples
from edge_runtime.serve import ServeConfig
from edge_runtime.serve.routes import UI_DIR, UI_FILES
from tests.test_serve import running
from tests.test_serve_workers import serving

# Debian's packages (`apt-get install chromium chromium-driver`, as .ci/run does).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
DESKTOP = (1280, 800)
PHONE = (390, 844)
TOKEN = "webui-token-for-tests-0123456789"
WAIT = 20  # seconds for anything the page does


# ----------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh profile, its console and network logs, and a fake camera."""
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), (
        "the browser tests need Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        # Without these Chromium phones home, which this closed network refuses.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        # getUserMedia on a generated test pattern, without a permission prompt.
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser) -> Iterator[webdriver.Chrome]:
    """The browser with empty logs and a desktop-sized viewport, for one test."""
    browser.get_log("browser")
    browser.get_log("performance")
    set_viewport(browser, DESKTOP)
    yield browser
    browser.execute_script("sessionStorage.clear()")


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    """Where screenshots go: $KERAS2EDGE_SCREENSHOTS, else a test directory (its path is printed)."""
    chosen = os.environ.get("KERAS2EDGE_SCREENSHOTS")
    directory = Path(chosen) if chosen else tmp_path_factory.mktemp("webui-screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {directory}")
    return directory


def set_viewport(driver, size: tuple[int, int]) -> None:
    width, height = size
    mobile = width < 600
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )


def open_page(driver, origin: str) -> None:
    """Load the page and wait until it shows the model or asks for the token."""
    driver.get(origin + "/")
    wait_for(
        driver,
        lambda d: d.find_element(By.ID, "app").is_displayed() or d.find_element(By.ID, "token-form").is_displayed(),
    )


def wait_for(driver, condition, seconds: float = WAIT):
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.05).until(condition)
    except TimeoutException:
        shown = driver.execute_script(
            "return ['status', 'error', 'token-error', 'prediction']"
            ".map(id => id + ': ' + document.getElementById(id).textContent)"
        )
        raise AssertionError(f"the page did not get there in {seconds} s; it shows {shown}") from None


def settled(driver) -> None:
    """Wait until no request is in flight or waiting (the result section's aria-busy)."""
    wait_for(driver, lambda d: d.find_element(By.ID, "result").get_attribute("aria-busy") == "false")


def shown_result(driver) -> tuple[str, str]:
    settled(driver)
    error = driver.find_element(By.ID, "error").text
    assert not error, f"the page shows an error: {error}"
    return driver.find_element(By.ID, "prediction").text, driver.find_element(By.ID, "confidence").text


def percent(p: float) -> str:
    """As the page writes a probability."""
    return f"{p * 100:.1f} %"


def expected(model, probabilities: np.ndarray) -> tuple[str, str]:
    return model.class_labels[int(probabilities.argmax())], percent(float(probabilities.max()))


def predict_requests(driver) -> int:
    return driver.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.endsWith('/v1/predict')).length"
    )


def assert_clean(driver, origin: str, allowed_errors: re.Pattern | None = None) -> None:
    """No console error (except ``allowed_errors``) and no request to anything but ``origin``."""
    errors = [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and not (allowed_errors and allowed_errors.search(entry["message"]))
    ]
    assert errors == [], f"console errors: {errors}"
    urls = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        # Every request the page's documents make (the browser's own pages, such as the
        # blank tab before the first navigation, are not the page's doing).
        if (message["method"] == "Network.requestWillBeSent"
                and message["params"]["documentURL"].startswith(origin + "/")):
            urls.add(message["params"]["request"]["url"])
    urls.update(driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)"))
    assert urls, "no request was seen: the network log is not working"
    elsewhere = sorted(url for url in urls if not url.startswith(origin + "/"))
    assert elsewhere == [], f"requests to other origins: {elsewhere}"


def screenshot(driver, directory: Path, name: str) -> None:
    """Save the page at desktop and phone width; at phone width nothing may stick out sideways."""
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        set_viewport(driver, size)
        time.sleep(0.2)  # one layout and paint at the new size
        path = directory / f"{name}-{label}.png"
        driver.save_screenshot(str(path))
        with Image.open(path) as shot:
            assert shot.size == size
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} at {size[0]} px is {overflow} px wider than the screen"
    set_viewport(driver, DESKTOP)


def origin_of(server) -> str:
    return f"http://127.0.0.1:{server.server_port}"


def png_bytes(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def canvas_png(driver, element_id: str) -> bytes:
    url = driver.execute_script(f"return document.getElementById('{element_id}').toDataURL('image/png')")
    return base64.b64decode(url.split(",", 1)[1])


def upload(driver, path: Path) -> None:
    driver.find_element(By.ID, "file").send_keys(str(path))


def drop_file(driver, data: bytes, name: str, mime: str) -> None:
    """Drop a file on the drop box as a user dragging it from the desktop would."""
    driver.execute_script(
        """
        const [b64, name, type] = arguments;
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, {type}));
        const target = document.getElementById('drop');
        for (const kind of ['dragenter', 'dragover', 'drop']) {
          target.dispatchEvent(new DragEvent(kind, {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }
        """,
        base64.b64encode(data).decode(),
        name,
        mime,
    )


def draw_stroke(driver, points: list[tuple[int, int]], move_ms: int) -> None:
    """One mouse stroke through ``points`` (canvas pixels), ``move_ms`` per segment."""
    canvas = driver.find_element(By.ID, "canvas")
    left, top = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top]", canvas)
    actions = ActionBuilder(driver, mouse=PointerInput(interaction.POINTER_MOUSE, "mouse"), duration=move_ms)
    actions.pointer_action.move_to_location(round(left + points[0][0]), round(top + points[0][1]))
    actions.pointer_action.pointer_down()
    for x, y in points[1:]:
        actions.pointer_action.move_to_location(round(left + x), round(top + y))
    actions.pointer_action.pointer_up()
    actions.perform()


def draw_digit(driver, digit: np.ndarray, pointer: str) -> None:
    """Trace an MNIST digit on the canvas: one stroke along each run of ink of each pixel row.

    A 28x28 digit scaled up ten times to the 280x280 canvas, drawn with real pointer
    input (``mouse``, ``pen`` or ``touch``) through the browser's input pipeline.
    """
    canvas = driver.find_element(By.ID, "canvas")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    box = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width]", canvas
    )
    left, top, width = box
    cell = width / digit.shape[1]
    kind = {
        "mouse": interaction.POINTER_MOUSE, "pen": interaction.POINTER_PEN, "touch": interaction.POINTER_TOUCH
    }[pointer]
    actions = ActionBuilder(driver, mouse=PointerInput(kind, pointer), duration=0)
    strokes = 0
    for row in range(digit.shape[0]):
        ink = np.flatnonzero(digit[row] > 127)
        runs = np.split(ink, np.flatnonzero(np.diff(ink) > 1) + 1) if ink.size else []
        for run in runs:
            y = round(top + (row + 0.5) * cell)
            actions.pointer_action.move_to_location(round(left + (run[0] + 0.5) * cell), y)
            actions.pointer_action.pointer_down()
            actions.pointer_action.move_to_location(round(left + (run[-1] + 0.5) * cell), y)
            actions.pointer_action.pointer_up()
            strokes += 1
    assert strokes > 3
    actions.perform()


# ----------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def digits_model(small_mlp_artifacts):
    return edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite")


@pytest.fixture(scope="module")
def digits_server(small_mlp_artifacts):
    with running(ServeConfig(host="127.0.0.1", port=0),
                 [edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite")]) as (server, _):
        yield server


@pytest.fixture(scope="module")
def rgb_model(rgb_cnn_artifacts):
    return edge_runtime.load(rgb_cnn_artifacts / "tflite_int8.tflite")


@pytest.fixture(scope="module")
def rgb_server(rgb_cnn_artifacts):
    with running(ServeConfig(host="127.0.0.1", port=0),
                 [edge_runtime.load(rgb_cnn_artifacts / "tflite_int8.tflite")]) as (server, _):
        yield server


@pytest.fixture(scope="module")
def feature_model(feature_mlp_artifacts):
    return edge_runtime.load(feature_mlp_artifacts / "tflite_int8.tflite")


@pytest.fixture(scope="module")
def feature_server(feature_mlp_artifacts):
    model = edge_runtime.load(feature_mlp_artifacts / "tflite_int8.tflite")
    with running(ServeConfig(host="127.0.0.1", port=0), [model]) as (server, _):
        yield server


def get(port: int, path: str, method: str = "GET", headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


# ----------------------------------------------------------------------------- HTTP only


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        for name in ("src", "href"):
            if attributes.get(name):
                self.urls.append(attributes[name])
        if tag == "script" and not attributes.get("src"):
            self.inline_scripts += 1
        assert not any(name.startswith("on") for name in attributes), f"inline event handler on <{tag}>"


def test_page_and_its_files_are_served_with_a_same_origin_policy_and_weigh_tens_of_kb(digits_server):
    port = digits_server.server_port
    status, headers, html = get(port, "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"].startswith("default-src 'self'")
    references = _References()
    references.feed(html.decode())
    assert references.inline_scripts == 0
    # Everything the page loads is one of its own files, by a relative URL on this server.
    assert sorted("/" + url for url in references.urls) == sorted(path for path in UI_FILES if path != "/")
    total = len(html)
    for path in UI_FILES:
        status, headers, body = get(port, path)
        assert status == 200 and headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert body == (UI_DIR / UI_FILES[path][0]).read_bytes()
        # No absolute URL (an SVG's namespace name is an identifier, never fetched).
        assert not re.search(rb"https?://", body.replace(b'xmlns="http://www.w3.org/2000/svg"', b""))
        total += len(body) if path != "/" else 0
    assert 10_000 < total < 60_000, f"the page weighs {total} bytes"
    status, headers, body = get(port, "/", "HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(html)


def test_page_needs_no_token_but_the_api_behind_it_does(small_mlp_artifacts):
    config = ServeConfig(host="127.0.0.1", port=0, token=TOKEN)
    with running(config, [edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite")]) as (server, _):
        port = server.server_port
        assert all(get(port, path)[0] == 200 for path in UI_FILES)
        assert get(port, "/v1/model")[0] == 401
        assert get(port, "/ui/other.js")[0] == 401  # only the page's own files are public
        assert get(port, "/v1/model", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200


def test_no_ui_serves_the_api_without_the_page(small_mlp_artifacts):
    # (Without --no-ui the CLI serves the page: the token test below opens it.)
    with serving(small_mlp_artifacts / "tflite_int8.tflite", "--no-ui") as served:
        status, _, body = get(served.port, "/")
        assert status == 404 and "--no-ui" in json.loads(body)["error"]
        assert get(served.port, "/ui/app.js")[0] == 404
        assert get(served.port, "/v1/model")[0] == 200


def test_predict_takes_json_feature_rows_for_a_feature_model(feature_server, feature_model, feature_mlp_artifacts):
    rows = load_samples(feature_mlp_artifacts, feature_model.input.shape).inputs[:5]
    conn = http.client.HTTPConnection("127.0.0.1", feature_server.server_port, timeout=10)
    body = json.dumps({"features": rows.tolist()})
    conn.request("POST", "/v1/predict", body=body, headers={"Content-Type": "application/json"})
    answer = json.loads(conn.getresponse().read())
    assert answer["labels"] == feature_model.classify(rows)
    np.testing.assert_allclose(answer["probabilities"], feature_model.predict(rows), atol=1e-6)
    for document, fragment in [
        ({"features": [rows[0].tolist()[:-1]]}, "features[0] must be a list of 13 numbers, got 12 values"),
        ({"features": [[*rows[0].tolist()[:-1], "7"]]}, "features[0] must hold only finite numbers"),
        ({"images": [rows[0].tolist()]}, 'send "features", not "images"'),
    ]:
        conn.request("POST", "/v1/predict", body=json.dumps(document), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 400 and fragment in json.loads(response.read())["error"]
    conn.request("POST", "/v1/predict", body=png_bytes(np.zeros((8, 8), np.uint8)),
                 headers={"Content-Type": "image/png"})
    response = conn.getresponse()
    assert response.status == 415 and '"features"' in json.loads(response.read())["error"]
    conn.close()


def test_the_wheel_a_pi_installs_carries_the_page(tmp_path):
    from convert.bundle import build_wheel

    with zipfile.ZipFile(build_wheel(tmp_path)) as wheel:
        shipped = {name: wheel.read(name) for name in wheel.namelist() if name.startswith("edge_runtime/serve/ui/")}
    assert shipped == {f"edge_runtime/serve/ui/{name}": (UI_DIR / name).read_bytes() for name, _ in UI_FILES.values()}


# ----------------------------------------------------------------------------- in the browser


def test_drawn_mnist_digits_get_the_label_the_model_gives_the_canvas_and_the_digit(
    page, digits_server, digits_model, mnist, screenshots
):
    origin = origin_of(digits_server)
    open_page(page, origin)
    assert page.find_element(By.ID, "canvas").is_displayed()
    assert page.find_element(By.ID, "info-sha").text == digits_model.sha256
    assert page.find_element(By.ID, "info-input").text == digits_model.input.describe()
    # The first test digits the model itself gets right, one per pointer type.
    right = [i for i in range(50) if digits_model.classify(mnist.x_test[i])[0] == str(mnist.y_test[i])]
    for index, pointer in zip(right, ("mouse", "pen", "touch")):
        page.find_element(By.ID, "clear").click()
        assert page.find_element(By.ID, "prediction").text == ""
        draw_digit(page, mnist.x_test[index], pointer)
        label, confidence = shown_result(page)
        # What the command line's digit preprocessing and the model make of the canvas as drawn...
        pixels = load_image(canvas_png(page, "canvas"), digits_model.input.image_size, digits=True)
        assert (label, confidence) == expected(digits_model, digits_model.predict(pixels)[0]), pointer
        # ...is what the model says for the MNIST digit that was traced.
        assert label == digits_model.classify(mnist.x_test[index])[0] == str(mnist.y_test[index]), pointer
        assert page.find_element(By.ID, "announce").text.startswith(f"Prediction: {label},")
        bars = page.find_elements(By.CSS_SELECTOR, "#bars li")
        assert len(bars) == 5 and bars[0].find_element(By.CLASS_NAME, "name").text == label
        timing = page.find_element(By.ID, "timing").text
        assert re.fullmatch(r"Server [\d.]+ ms \(model [\d.]+ ms\), round trip [\d.]+ ms, \w+\.", timing)
        if pointer == "mouse":
            screenshot(page, screenshots, "digits-drawn")
    # One slow stroke (a single press): answers arrive before the pen is lifted.
    page.find_element(By.ID, "clear").click()
    before = predict_requests(page)
    draw_stroke(page, [(60 + 8 * i, 140 + (40 if i % 2 else -40)) for i in range(20)], move_ms=60)
    settled(page)
    assert predict_requests(page) - before >= 3
    assert_clean(page, origin)


def test_uploaded_mnist_png_is_classified_as_model_classify_does(page, digits_server, digits_model, mnist, tmp_path):
    origin = origin_of(digits_server)
    open_page(page, origin)
    for index in (3, 4):
        path = tmp_path / f"digit{index}.png"
        path.write_bytes(png_bytes(mnist.x_test[index]))
        upload(page, path)
        assert shown_result(page) == expected(digits_model, digits_model.predict(mnist.x_test[index])[0])
        assert page.find_element(By.ID, "prediction").text == digits_model.classify(mnist.x_test[index])[0]
        assert f"digit{index}.png" in page.find_element(By.ID, "sent-note").text
    assert page.find_element(By.ID, "preview").is_displayed()
    assert_clean(page, origin)


def test_rgb_images_uploaded_dropped_or_re_encoded_are_classified_as_the_model_does(
    page, rgb_server, rgb_model, rgb_cnn_artifacts, tmp_path, screenshots
):
    origin = origin_of(rgb_server)
    open_page(page, origin)
    assert not page.find_element(By.ID, "canvas").is_displayed()  # not a digit model
    assert page.find_element(By.ID, "info-classes").text.startswith(f"{rgb_model.num_classes}: circle, square")
    samples = load_samples(rgb_cnn_artifacts, rgb_model.input.shape)
    # A PNG of a test image at the model's size: exactly the array model.classify gets.
    path = tmp_path / "shape.png"
    path.write_bytes(png_bytes(samples.inputs[0]))
    upload(page, path)
    assert shown_result(page) == expected(rgb_model, rgb_model.predict(samples.inputs[0])[0])
    assert page.find_element(By.ID, "prediction").text == rgb_model.classify(samples.inputs[0])[0]
    screenshot(page, screenshots, "rgb-uploaded")
    # A larger JPEG dropped on the page: the server resizes it as the command line does.
    # (Of a test image the model gets right, for the BMP below.)
    index = next(i for i, x in enumerate(samples.inputs)
                 if rgb_model.classify(x)[0] == rgb_model.class_labels[samples.labels[i]])
    big = np.asarray(Image.fromarray(samples.inputs[index]).resize((192, 160), Image.Resampling.NEAREST))
    jpeg = png_bytes(big, "JPEG")
    drop_file(page, jpeg, "dropped.jpg", "image/jpeg")
    pixels = load_image(jpeg, rgb_model.input.image_size, color_mode="rgb", digits=False)
    assert shown_result(page) == expected(rgb_model, rgb_model.predict(pixels)[0])
    assert "dropped.jpg" in page.find_element(By.ID, "sent-note").text
    # A BMP, which the server does not take: re-encoded in the browser, still classified.
    path = tmp_path / "shape.bmp"
    Image.fromarray(big).save(path, format="BMP")
    upload(page, path)
    label, _ = shown_result(page)
    assert "re-encoded in the browser" in page.find_element(By.ID, "sent-note").text
    assert label == rgb_model.classify(samples.inputs[index])[0]
    assert_clean(page, origin)


def test_camera_frames_are_classified_once_and_continuously(page, rgb_server, rgb_model):
    origin = origin_of(rgb_server)
    open_page(page, origin)
    page.find_element(By.ID, "cam-start").click()
    wait_for(page, lambda d: d.find_element(By.ID, "cam-shot").is_enabled())
    assert page.find_element(By.ID, "video").is_displayed()
    page.find_element(By.ID, "cam-shot").click()
    label, confidence = shown_result(page)
    frame = canvas_png(page, "preview")  # exactly the frame that was sent
    pixels = load_image(frame, rgb_model.input.image_size, color_mode="rgb", digits=False)
    assert (label, confidence) == expected(rgb_model, rgb_model.predict(pixels)[0])
    with Image.open(io.BytesIO(frame)) as sent:
        assert max(sent.size) <= 640
    before = predict_requests(page)
    page.find_element(By.ID, "cam-loop").click()
    wait_for(page, lambda d: predict_requests(d) >= before + 5)
    page.find_element(By.ID, "cam-stop").click()
    settled(page)
    assert not page.find_element(By.ID, "cam-loop").is_selected()
    stopped = predict_requests(page)
    time.sleep(0.5)
    assert predict_requests(page) == stopped  # stopping the camera stops the loop
    assert not page.find_element(By.ID, "video").is_displayed()
    assert_clean(page, origin)


def test_feature_form_has_one_labelled_field_per_feature_and_classifies_rows_as_the_model_does(
    page, feature_server, feature_model, feature_mlp_artifacts, screenshots
):
    origin = origin_of(feature_server)
    open_page(page, origin)
    assert not page.find_element(By.ID, "image").is_displayed()
    fields = page.find_elements(By.CSS_SELECTOR, "#feature-fields input")
    names = list(feature_model.input.feature_names)
    assert [field.accessible_name for field in fields] == names
    rows = load_samples(feature_mlp_artifacts, feature_model.input.shape).inputs
    # Typed field by field, sent with Enter.
    for field, value in zip(fields, rows[0]):
        field.send_keys(repr(float(value)))
    fields[-1].send_keys(Keys.ENTER)
    assert shown_result(page) == expected(feature_model, feature_model.predict(rows[0])[0])
    assert page.find_element(By.ID, "prediction").text == feature_model.classify(rows[0])[0]
    # Pasted as one CSV row.
    paste = page.find_element(By.ID, "paste")
    paste.send_keys(",".join(repr(float(v)) for v in rows[1]))
    assert [float(f.get_attribute("value")) for f in fields] == [float(v) for v in rows[1]]
    page.find_element(By.CSS_SELECTOR, "#features button[type=submit]").click()
    assert shown_result(page) == expected(feature_model, feature_model.predict(rows[1])[0])
    screenshot(page, screenshots, "features")
    paste.clear()
    paste.send_keys("1, 2, 3")
    assert "has 3 values; the model takes 13" in page.find_element(By.ID, "error").text
    assert_clean(page, origin)


def test_token_is_asked_once_a_wrong_one_is_a_clear_message_and_the_right_one_works(
    page, small_mlp_artifacts, digits_model, mnist, tmp_path
):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with serving(small_mlp_artifacts / "tflite_int8.tflite", "--token-file", str(token_file)) as served:
        origin = f"http://127.0.0.1:{served.port}"
        open_page(page, origin)
        form = page.find_element(By.ID, "token-form")
        assert form.is_displayed() and not page.find_element(By.ID, "app").is_displayed()
        token = page.find_element(By.ID, "token")
        assert page.switch_to.active_element == token  # focus is where the user types
        assert page.find_element(By.ID, "token-error").text == ""
        token.send_keys("not-the-token-0123456789" + Keys.ENTER)
        wait_for(page, lambda d: d.find_element(By.ID, "token-error").text)
        message = page.find_element(By.ID, "token-error").text
        assert "refused this token (401" in message and "token file" in message
        assert not page.find_element(By.ID, "app").is_displayed()
        assert page.execute_script("return sessionStorage.length") == 0
        page.find_element(By.ID, "token").send_keys(TOKEN + Keys.ENTER)
        wait_for(page, lambda d: d.find_element(By.ID, "app").is_displayed())
        assert not form.is_displayed()
        assert page.execute_script(
            "return [sessionStorage.getItem('keras2edge.token'), localStorage.length]"
        ) == [TOKEN, 0]
        path = tmp_path / "digit.png"
        path.write_bytes(png_bytes(mnist.x_test[5]))
        upload(page, path)
        assert shown_result(page) == expected(digits_model, digits_model.predict(mnist.x_test[5])[0])
        # Asked once: a reload in the same tab goes straight to the model.
        open_page(page, origin)
        assert page.find_element(By.ID, "app").is_displayed()
        assert not page.find_element(By.ID, "token-form").is_displayed()
        # The two refused /v1/model calls (no token, wrong token) are the only errors.
        assert_clean(page, origin, re.compile(r"/v1/model - Failed to load resource: .* 401 \(Unauthorized\)"))
        refused = [r for r in served.records if r.get("event") == "access" and r["status"] == 401]
        assert [r["path"] for r in refused] == ["/v1/model", "/v1/model"]


def test_page_is_keyboard_operable_and_labelled_for_screen_readers(page, digits_server, digits_model, mnist, tmp_path):
    origin = origin_of(digits_server)
    open_page(page, origin)
    controls = [
        element
        for element in page.find_elements(By.CSS_SELECTOR, "input, button, canvas")
        if element.is_displayed()
    ]
    unnamed = [element.get_attribute("id") for element in controls if not element.accessible_name]
    assert unnamed == []
    live = page.find_element(By.ID, "announce")
    assert live.get_attribute("aria-live") == "polite"
    # Tab order follows the page: the drawing's Clear button, the file inputs, the camera.
    page.find_element(By.TAG_NAME, "body").click()
    order = []
    for _ in range(4):
        ActionChains(page).send_keys(Keys.TAB).perform()  # the keyboard, not an element's send_keys
        order.append(page.switch_to.active_element.get_attribute("id"))
    assert order == ["clear", "file", "photo", "cam-start"]
    # A file chosen without a mouse is announced in the live region.
    path = tmp_path / "digit.png"
    path.write_bytes(png_bytes(mnist.x_test[6]))
    page.find_element(By.ID, "file").send_keys(str(path))
    label, confidence = shown_result(page)
    assert live.text == f"Prediction: {label}, {confidence}"
    assert_clean(page, origin)
