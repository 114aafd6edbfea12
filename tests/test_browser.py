"""Real JupyterLab in a real (headless) Chromium: the lessons' widgets, clicked as a student would.

`make browser-test` runs only these tests. They
  - install Debian's chromium and the playwright package if missing (scripts/install_browser.sh),
  - train two tiny models into a temp folder (the playground needs saved models),
  - start `jupyter lab` from the venv on a random loopback port with its own settings folders,
  - open lessons 00, 03 and 09, run all cells from the Run menu and use the widgets.
Screenshots go to outputs/browser/ (and the server log too when a test fails).

SLM_BROWSER_BREAK checks that the test can fail (never set it in CI):
  widgets   start Lab with the widget extension disabled: every test must fail;
  generate  run a copy of lesson 09 whose Generate button does nothing: the playground test must fail.
"""
from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from browser_support import (CHROMIUM, CHROMIUM_ARGS, ROOT, SHOTS, InstallImpossible, LabServer,
                             assert_no_widget_text_reprs, install_browser, open_notebook, output_texts,
                             run_all_cells, screenshot, start_training, stop_process_group, wait_until)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]  # the first test also installs Chromium

BREAK = os.environ.get("SLM_BROWSER_BREAK", "")
PLAYGROUND = "notebooks/09_generation_playground.ipynb"
PROMPT = "The little dog"
# ipywidgets 8 draws tqdm's bar as .widget-hprogress (older versions: .widget-progress / <progress>)
PROGRESS = ", ".join(f".jp-OutputArea-output {c}" for c in (".widget-hprogress", ".widget-progress", "progress"))


def _failed_since(request, count: int) -> bool:
    return request.session.testsfailed > count


@pytest.fixture(scope="module")
def playwright_browser(tmp_path_factory):
    """Headless Chromium (Debian's, no download) with a fresh profile and no network but loopback."""
    try:
        install_browser()
    except InstallImpossible as e:
        pytest.skip(f"cannot install Chromium here: {e}")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    context = None
    try:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 1000}, service_workers="block")
        context.set_default_timeout(30_000)
        yield context
    finally:
        if context is not None:
            context.close()
        pw.stop()


@pytest.fixture(scope="module")
def lab_env(tmp_path_factory):
    """Temp models/outputs folders; ultra_tiny and tiny start training now, in the background."""
    tmp = tmp_path_factory.mktemp("browser")
    models, outputs = tmp / "models", tmp / "outputs"
    training = start_training(models, outputs, tmp / "train.log")
    yield {"tmp": tmp, "models": models, "outputs": outputs, "training": training}
    stop_process_group(training)


@pytest.fixture(scope="module")
def lab(lab_env, request):
    """`jupyter lab` from the venv; always stopped (process group), its log kept when a test failed."""
    failed_before = request.session.testsfailed
    server = LabServer(lab_env["tmp"], lab_env["models"], lab_env["outputs"], disable_widgets=BREAK == "widgets")
    started = False
    try:
        server.start()
        started = True
        yield server
    finally:
        server.stop()
        if not started or _failed_since(request, failed_before):
            SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(server.log_path, SHOTS / "jupyter-server.log")
            train_log = lab_env["tmp"] / "train.log"
            if train_log.exists():
                shutil.copy(train_log, SHOTS / "train.log")


@pytest.fixture
def page(playwright_browser, lab, request):
    """One Lab tab per test; closed, and its kernel shut down, afterwards (a failure screenshot first)."""
    failed_before = request.session.testsfailed
    pg = playwright_browser.new_page()
    console = []
    pg.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    yield pg
    if _failed_since(request, failed_before):
        try:
            screenshot(pg, f"FAILED-{request.node.name}")
            (SHOTS / f"FAILED-{request.node.name}-console.txt").write_text("\n".join(console))
        except Exception:  # noqa: BLE001 - best effort: the test's own error is what matters
            pass
    pg.close()
    lab.shutdown_kernels()


def wait_for_training(lab_env) -> None:
    proc = lab_env["training"]
    try:
        proc.wait(timeout=180)
    finally:
        log = (lab_env["tmp"] / "train.log").read_text(errors="replace")
    assert proc.returncode == 0, f"training the test models failed:\n{log[-3000:]}"


def widget_text(loc) -> str:
    return loc.inner_text() if loc.count() else ""


# ---------------------------------------------------------------------------------- tests


def test_setup_check_widgets_render(page, lab):
    """Lesson 00: the 'Try me' slider and the tqdm bar are real controls, not text."""
    open_notebook(page, lab, "notebooks/00_setup_check.ipynb")
    run_all_cells(page)
    assert_no_widget_text_reprs(page, "00_setup_check")
    slider = page.locator(".jp-OutputArea-output .widget-slider", has=page.locator("label", has_text="Try me"))
    slider.first.wait_for(timeout=20_000)
    bar = page.locator(PROGRESS)
    bar.first.wait_for(timeout=20_000)
    readout = slider.first.locator(".widget-readout")
    assert readout.inner_text().strip() == "3", readout.inner_text()
    # the bar filled up: tqdm's widget ends with the full count and a full, green bar
    assert "30/30" in output_texts(page), output_texts(page)[-800:]
    assert bar.first.locator(".progress-bar-success").evaluate("b => b.style.width") == "100%"
    # and the slider is a live control: the keyboard moves it
    slider.first.locator(".noUi-handle").focus()
    page.keyboard.press("ArrowRight")
    wait_until(lambda: readout.inner_text().strip() == "4", 10,
               lambda: f"the slider did not move with the arrow key; readout {readout.inner_text()!r}")
    screenshot(page, "00_setup_check", slider.first)


def test_ultra_tiny_progress_and_live_plot(page, lab, lab_env):
    """Lesson 03 (smoke): a tqdm widget bar while training and the live loss plot as an image."""
    wait_for_training(lab_env)  # the lesson saves into the same temp models folder
    open_notebook(page, lab, "notebooks/03_ultra_tiny.ipynb")
    run_all_cells(page, timeout=180)
    assert_no_widget_text_reprs(page, "03_ultra_tiny")
    bar = page.locator(PROGRESS)
    bar.first.wait_for(timeout=20_000)
    assert re.search(r"ultra_tiny:\s*100%.*?20/20", output_texts(page), re.S), output_texts(page)[:1500]
    plot = page.locator('.jp-OutputArea-output[data-mime-type="image/png"] img, .jp-RenderedImage img').first
    plot.wait_for(timeout=20_000)
    wait_until(lambda: plot.evaluate("i => i.complete && i.naturalWidth > 0"), 10,
               "the live loss plot is not a loaded image")
    screenshot(page, "03_ultra_tiny", bar.first)


def test_generation_playground(page, lab, lab_env, request):
    """Lesson 09: type a prompt, Generate, set temperature 0 (greedy), Generate again, ask for the chart."""
    wait_for_training(lab_env)
    path = PLAYGROUND
    if BREAK == "generate":  # a copy whose Generate button does nothing: this test must fail
        nb = json.loads((ROOT / PLAYGROUND).read_text())
        cell = next(c for c in nb["cells"] if "generation_playground()" in "".join(c["source"]))
        source = "".join(cell["source"])
        cell["source"] = re.sub(r"^playground$", "playground.generate_button._click_handlers.callbacks = []\n"
                                "playground", source, count=1, flags=re.M)
        assert cell["source"] != source, "could not break the Generate button in a copy of lesson 09"
        SHOTS.mkdir(parents=True, exist_ok=True)
        broken = SHOTS / "_broken_09_generation_playground.ipynb"
        broken.write_text(json.dumps(nb))
        request.addfinalizer(lambda: broken.unlink(missing_ok=True))
        path = str(broken.relative_to(ROOT))
    open_notebook(page, lab, path)
    run_all_cells(page)
    assert_no_widget_text_reprs(page, "09_generation_playground")

    pg = page.locator(".widget-vbox", has=page.locator("b", has_text="Generation playground")).first
    generate = pg.locator(".widget-button", has_text=re.compile(r"^\s*Generate\s*$"))
    generate.wait_for(timeout=20_000)
    options = pg.locator(".widget-dropdown select option").all_inner_texts()
    assert any(o.startswith("ultra_tiny") for o in options) and any(o.startswith("tiny") for o in options), options
    sample = pg.locator(".slm-sample .widget-html-content > div").first  # the text, without its caption
    settings = pg.locator(".slm-sample .slm-settings")  # what produced it, as the kernel received it
    chart = pg.locator("img.slm-chart, .slm-chart img").first
    screenshot(page, "09_1_rendered", pg)
    assert not chart.is_visible(), "before any chart is drawn the chart should be hidden, not a broken image"

    def generated() -> str:
        return widget_text(sample).strip()

    def no_broken_image() -> None:
        assert not chart.is_visible() or chart.evaluate("i => i.complete && i.naturalWidth > 0"), \
            "a broken-image icon shows where the chart was"

    # 1. type a prompt, press Generate
    before = generated()
    pg.locator(".widget-text", has=page.locator("label", has_text="Prompt")).locator("input").fill(PROMPT)
    generate.click()
    first = wait_until(lambda: (t := generated()).startswith(PROMPT) and len(t) > len(PROMPT) + 5 and t, 30,
                       lambda: f"after typing {PROMPT!r} and clicking Generate, the output should start with "
                               f"the prompt and continue it; it shows {widget_text(pg)[-300:]!r} "
                               f"(before the click: {before[:120]!r})")
    assert "temperature 0.80," in widget_text(settings), widget_text(settings)
    assert not generate.is_disabled(), "the Generate button stays disabled after generating"
    no_broken_image()
    screenshot(page, "09_2_generated", pg)

    # 2. temperature 0 (greedy: the likeliest token every time), with the arrow keys on the slider
    #    handle, then Generate again. The kernel must receive 0.00 (the sample's caption says what it
    #    got) and greedy text differs from a 0.80 sample, even from a nearly flat 5-step model.
    temp = pg.locator(".widget-slider", has=page.locator("label", has_text="Temperature"))
    readout = temp.locator(".widget-readout")
    assert readout.inner_text().strip() == "0.80", readout.inner_text()
    temp.locator(".noUi-handle").focus()
    for _ in range(16):
        page.keyboard.press("ArrowLeft")
    wait_until(lambda: readout.inner_text().strip() == "0.00", 10,
               lambda: f"16 arrow presses should move the temperature 0.80 -> 0.00; readout {readout.inner_text()!r}")
    generate.click()
    wait_until(lambda: "temperature 0.00 (greedy" in widget_text(settings), 90,
               lambda: f"after setting the slider to 0.00 and Generate, the kernel did not sample at temperature "
                       f"0: the sample's caption says {widget_text(settings)!r}")
    second = generated()
    assert second.startswith(PROMPT) and second != first, (
        f"greedy (temperature 0) gave the same text as temperature 0.80: {second[:300]!r}")
    no_broken_image()
    screenshot(page, "09_3_temperature", pg)

    # 3. the next-token chart for the new prompt
    pg.locator(".widget-button", has_text="Next-token probabilities").click()
    wait_until(lambda: chart.is_visible() and (chart.get_attribute("src") or "") != "", 30,
               "clicking 'Next-token probabilities' did not draw a chart")
    wait_until(lambda: chart.evaluate("i => i.complete && i.naturalWidth > 0"), 10,
               "the next-token chart is not a loaded image")
    assert generated() == second, "the chart button should not change the generated text"
    screenshot(page, "09_4_probabilities", pg)
    # 4. a new sample hides the chart of the old prompt, without leaving a broken image
    temp.locator(".noUi-handle").focus()
    page.keyboard.press("ArrowRight")
    generate.click()
    wait_until(lambda: "temperature 0.05," in widget_text(settings), 90, "Generate at 0.05 did not finish")
    no_broken_image()


def test_token_surprise_view(page, lab, lab_env):
    """Lesson 09: the coloured surprise view shows; a token's title holds its loss (hover) and a
    click opens the model's guesses there; the widget scores a text typed into it."""
    wait_for_training(lab_env)
    open_notebook(page, lab, PLAYGROUND)
    run_all_cells(page)
    assert_no_widget_text_reprs(page, "09_generation_playground")

    # 1. the static view of the section's first text: visible, coloured, with its mean and a legend
    view = page.locator(".jp-OutputArea-output .slm-surprise").first
    view.wait_for(timeout=20_000)
    assert view.is_visible() and view.locator(".slm-legend").is_visible()
    assert re.search(r"mean \d+\.\d{3} nats/token", view.locator(".slm-summary").inner_text())
    token = view.locator(".slm-text > details").nth(4)
    summary = token.locator("summary")
    assert summary.evaluate("e => getComputedStyle(e).backgroundColor") not in ("rgba(0, 0, 0, 0)", "transparent")
    # side by side in a line of text, not one token per line
    boxes = [view.locator(".slm-text > details").nth(i).bounding_box() for i in range(3)]
    assert boxes[0]["y"] == boxes[1]["y"] == boxes[2]["y"], f"tokens are not laid out inline: {boxes}"

    # 2. hover: the browser's tooltip is the title, which names the loss and the token's rank
    summary.hover()
    title = summary.get_attribute("title") or ""
    assert re.search(r"^\d+\.\d\d nats, guess #\d+", title), title

    # 3. click: the guesses open under the token, and close again on a second click
    popup = token.locator("span").first
    assert not popup.is_visible(), "the guesses should be hidden until the token is clicked"
    below = view.locator(".slm-legend").bounding_box()["y"]  # what comes after the text
    summary.click()
    wait_until(popup.is_visible, 5, "clicking a token did not open the model's guesses")
    assert view.locator(".slm-legend").bounding_box()["y"] == below, \
        "the open guesses pushed the text down: they should float over it, as a tooltip does"
    assert re.search(r"'.*' \d+%", popup.inner_text()), popup.inner_text()  # ' the' 40% ...
    assert popup.evaluate("e => getComputedStyle(e, '::before').content").startswith('"the model expected:')
    screenshot(page, "09_5_surprise_click", view)
    summary.click()
    wait_until(lambda: not popup.is_visible(), 5, "a second click did not close the guesses")

    # 4. the widget: type a text with words the stories never use, press Score, click a token
    widget = page.locator(".widget-vbox", has=page.locator("b", has_text="Token surprise")).first
    text = "The astronaut zorbled over the moon."
    widget.locator("textarea").fill(text)
    widget.locator(".widget-button", has_text=re.compile(r"^\s*Score\s*$")).click()
    scored = widget.locator(".slm-surprise")
    wait_until(lambda: "astronaut" in widget_text(scored.locator(".slm-text")), 30,
               lambda: f"Score did not show the typed text; the widget shows {widget_text(widget)[:300]!r}")
    assert re.search(r"; [1-9]\d* unknown to the vocabulary", widget_text(scored.locator(".slm-summary")))
    unknown = scored.locator("summary[style*='dashed']").first
    assert unknown.inner_text().strip() == "astronaut", unknown.inner_text()
    unknown.click()
    guesses = scored.locator(".slm-text > details[open] > span").first
    wait_until(guesses.is_visible, 5, "clicking a token in the widget did not open its guesses")
    assert "<unk>" in guesses.inner_text(), guesses.inner_text()
    screenshot(page, "09_6_surprise_widget", widget)
