"""The server's /docs page in Debian's Chromium with every request off 127.0.0.1 refused: it renders
the OpenAPI document (after the bearer token is entered) and its try-it box gets a prediction."""

from __future__ import annotations

import re

import pytest
from _servers import server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TOKEN = "docs-page-token"


def test_the_docs_page_renders_offline_and_predicts(browser, serving_models, env):
    from playwright.sync_api import expect

    with server(["--model-dir", serving_models["clf"], "--token", TOKEN], env) as port:
        base = f"http://127.0.0.1:{port}/"
        outside: list[str] = []
        page = browser.new_page()
        try:
            def only_loopback(route):
                if route.request.url.startswith(base):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", only_loopback)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(base + "docs")
            page.wait_for_selector("#auth", state="visible")  # openapi.json answered 401: the page asks
            page.fill("#token", TOKEN)
            page.click("#load")
            page.wait_for_selector("table >> text=city")
            assert page.inner_text("#title") == "clf (version 1)"
            for column in ("age", "income", "score", "visits", "plan"):
                assert page.locator("table code", has_text=column).count() == 1
            assert page.locator(".op code", has_text="/infer").count() == 2  # with and without a version
            page.click("text=Send")
            expect(page.locator("#try-answer")).to_have_text(re.compile(r"^200"), timeout=30_000)  # no eval: CSP
            answer = page.inner_text("#try-answer")
            assert '"prediction_ids"' in answer and '"model_version": "1"' in answer
            assert errors == [] and outside == []
        finally:
            page.close()
