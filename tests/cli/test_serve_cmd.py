"""``hybrid serve`` refuses at once what it cannot serve, before loading anything."""

from __future__ import annotations

import re
import socket
import sys
import types
from pathlib import Path

import pytest
from gguf_writer import embedded_header

from hybrid.cli import main
from hybrid.cli.serve import routing_summary
from hybrid.settings import load_settings


def test_a_taken_port_is_a_clear_error_not_a_hang(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "--port" in err


def test_a_missing_model_file_is_reported_before_serving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.gguf"
    assert main(["serve", "--model", str(missing)]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "hybrid models" in err


def test_a_file_that_is_not_a_gguf_is_reported_before_serving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"this is not a model")
    assert main(["serve", "--model", str(bogus)]) == 1
    assert str(bogus) in capsys.readouterr().err


def test_an_invalid_port_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "70000"]) == 2
    assert "server.port" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "myhost.example"])
def test_listening_beyond_loopback_needs_an_api_key(
    host: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--host", host]) == 1
    err = capsys.readouterr().err
    assert f"refusing to listen on {host}" in err
    assert "HYBRID_SERVER__API_KEY" in err


def test_with_an_api_key_a_public_address_passes_the_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYBRID_SERVER__API_KEY", "a-key-of-16-chars")
    # The check passes; the bind is what fails here (the address is not this machine's).
    assert main(["serve", "--host", "192.0.2.1"]) == 1
    err = capsys.readouterr().err
    assert "refusing" not in err and "cannot listen on 192.0.2.1" in err


def test_a_ledger_that_cannot_be_opened_is_reported_before_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setenv("HYBRID_LEDGER__PATH", str(not_a_folder / "ledger.sqlite3"))
    assert main(["serve"]) == 1
    err = capsys.readouterr().err
    assert "cannot open the ledger" in err and "HYBRID_LEDGER__PATH" in err
    assert "Traceback" not in err


def test_a_ledger_path_naming_a_folder_is_a_settings_error_before_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYBRID_LEDGER__PATH", str(tmp_path))
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == (
        f"hybrid: error: ledger.path {tmp_path} is a folder; name the file, e.g. "
        f"{tmp_path / 'ledger.sqlite3'}\n"
    )


def test_a_context_beyond_what_llama_cpp_holds_is_a_settings_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve", "--ctx", "1000000000000"]) == 2
    assert capsys.readouterr().err == (
        "hybrid: error: invalid setting local.n_ctx = 1000000000000 (from command line --ctx): "
        "Input should be less than or equal to 2147483647\n"
    )


def test_slots_out_of_range_are_a_settings_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--parallel", "0"]) == 2
    assert capsys.readouterr().err == (
        "hybrid: error: invalid setting local.parallel = 0 (from command line --parallel): "
        "Input should be greater than or equal to 1\n"
    )


def test_a_context_that_does_not_fit_memory_is_refused_before_anything_binds_or_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The real llama_cpp opens /dev/null at import and never closes it (a ResourceWarning at
    # exit); the probe asks it only whether it can offload to a GPU.
    no_gpu_build = types.SimpleNamespace(llama_supports_gpu_offload=lambda: False)
    monkeypatch.setitem(sys.modules, "llama_cpp", no_gpu_build)
    # The embedded model keeps 18 KiB of KV cache per token: 200M tokens need 3.4 TiB.
    model = embedded_header(tmp_path / "gemma-3-270m-q4_k_m.gguf")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code = main(["serve", "--model", str(model), "--ctx", "200000000", "--port", str(port)])

    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    assert re.fullmatch(
        r"hybrid: error: context size 200,000,000 \(local\.n_ctx\) does not fit this machine: "
        r"the model needs 3[\d.]+ GiB of RAM, but only [\d.]+ [GM]iB of free RAM.* is left and "
        r"[\d.]+ [GM]iB of it is kept free; set a smaller context \(--ctx or HYBRID_LOCAL__N_CTX; "
        r"at most [\d,]+ fits here\), or leave it unset to let hybrid choose\n",
        err,
    ), err
    # Refused before the port was bound (it is taken) and before the model was loaded.
    assert "cannot listen" not in err and "llama.cpp" not in err


def test_the_start_says_where_requests_escalate_and_whether_local_answers_are_read(
    isolated: Path,
) -> None:
    def summary(**environ: str) -> str:
        environ = {"HYBRID_HOME": str(isolated / "home"), **environ}
        return routing_summary(load_settings(environ=environ, dotenv_file=None).settings)

    assert "no cloud model is configured" in summary()
    read = summary(OPENAI_API_KEY="sk-test")
    assert "escalate to openai/" in read and "read before they are sent" in read
    unread = summary(OPENAI_API_KEY="sk-test", HYBRID_ROUTING__CASCADE__ENABLED="false")
    assert "sent unread (routing.cascade.enabled = false)" in unread


def test_the_start_names_the_lan_servers_requests_escalate_to_first(isolated: Path) -> None:
    config = isolated / "hybrid.toml"
    config.write_text(
        "[[lan.servers]]\n"
        'name = "gpu-box"\n'
        'base_url = "http://127.0.0.1:9/v1"\n'
        "[[lan.servers]]\n"
        'name = "spare"\n'
        'base_url = "http://127.0.0.1:9/v1"\n'
    )

    def summary(**environ: str) -> str:
        environ = {"HYBRID_HOME": str(isolated / "home"), "HYBRID_CONFIG": str(config), **environ}
        return routing_summary(load_settings(environ=environ, dotenv_file=None).settings)

    alone = summary()
    assert alone.startswith("routing: requests escalate to the LAN servers gpu-box, spare (no ")
    assert "the local model answers it" in alone and "read before they are sent" in alone
    both = summary(OPENAI_API_KEY="sk-test")
    assert both.startswith("routing: requests escalate to the LAN servers gpu-box, spare, then ")
    assert "openai/" in both and "no cloud model" not in both
    config.write_text('[[lan.servers]]\nname = "gpu-box"\nbase_url = "http://127.0.0.1:9/v1"\n')
    assert summary().startswith("routing: requests escalate to the LAN server gpu-box (no ")
