"""``hybrid probe`` checks each LAN server: up with its models and load, or down and why."""

from __future__ import annotations

from fake_cloud import FakeCloud, closed_port

from hybrid.cli.probe import lan_report, render_lan
from hybrid.settings import Settings

BIG = "qwen2.5-32b-instruct"


def test_probe_shows_a_server_up_with_its_models_and_one_down_with_why() -> None:
    with FakeCloud(models=(BIG,)) as box:
        settings = Settings(
            lan={
                "servers": [
                    {
                        "name": "gpu-box",
                        "base_url": f"{box.base_url}/v1",
                        "api_key": box.openai_key,
                        "privacy": "trusted",
                    },
                    {"name": "spare", "base_url": f"http://127.0.0.1:{closed_port()}/v1"},
                ]
            }
        )
        report = lan_report(settings)
    up, down = report
    assert (up["name"], up["up"], up["models"], up["trusted"]) == ("gpu-box", True, [BIG], True)
    assert (down["name"], down["up"]) == ("spare", False)
    text = render_lan(report, settings.lan.strategy)
    assert "LAN servers (least-loaded):" in text
    assert f"up; models: {BIG}; trusted" in text
    assert "load: not reported; hybrid counts its own requests (at most 4 at once)" in text
    assert "down: cannot connect to" in text
