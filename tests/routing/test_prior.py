"""A model without a calibration routes on a prior from its size and family."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf_writer import tiny_model
from kinds_of_request import asked

from hybrid.generation import Message
from hybrid.models.stores.files import quant_label
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.prior import (
    ACCURACY_BY_SIZE,
    BASE_MODEL_SHA256,
    ModelTraits,
    build_prior,
    calibration_features,
    expected_accuracy,
    is_prior,
    parse_size_label,
    prior_for_file,
    quantization_bits,
)
from hybrid.routing.difficulty.store import find, gguf_sha256, save
from hybrid.routing.policies.difficulty import CalibratedModel, DifficultyPolicy

HARD = "Compute 48127 * 9931 - 77 and explain each step of the long multiplication."
EASY = "Hi!"


def shipped() -> DifficultyModel:
    found = find(Path("/nonexistent-home"), BASE_MODEL_SHA256)
    assert found is not None and found.source == "shipped"
    return found.model


def traits(parameters: float, family: str = "llama", quant: str = "Q4_K_M") -> ModelTraits:
    return ModelTraits(parameters, family, quant, instruct=True)


def test_the_measured_point_is_the_embedded_model_and_the_rest_are_flagged_assumptions() -> None:
    measured = [point for point in ACCURACY_BY_SIZE if point.basis == "measured"]
    assert len(measured) == 1 and "embedded" in measured[0].note
    # The shipped calibration's own measurement is the measured point.
    assert measured[0].accuracy == pytest.approx(shipped().meta["local_accuracy"], abs=0.001)
    sizes = [point.parameters for point in ACCURACY_BY_SIZE]
    accuracies = [point.accuracy for point in ACCURACY_BY_SIZE]
    assert sizes == sorted(sizes) and accuracies == sorted(accuracies)


def test_expected_accuracy_grows_with_size_and_drops_with_coarse_quantisation() -> None:
    small, mid, big = (expected_accuracy(traits(p)) for p in (0.3e9, 3e9, 30e9))
    assert small < mid < big
    between = expected_accuracy(traits(2e9))
    assert expected_accuracy(traits(1e9)) < between < expected_accuracy(traits(3e9))
    assert expected_accuracy(traits(8e9, quant="Q2_K")) < expected_accuracy(traits(8e9))
    assert expected_accuracy(traits(8e9, quant="Q8_0")) >= expected_accuracy(traits(8e9))
    assert expected_accuracy(traits(8e9, family="qwen2")) > expected_accuracy(traits(8e9))
    assert expected_accuracy(ModelTraits(None, "llama", "Q4_K_M", instruct=False)) == (
        ACCURACY_BY_SIZE[0].accuracy
    )


def test_size_labels_and_quantisation_labels_are_read() -> None:
    assert parse_size_label("270M") == 270e6
    assert parse_size_label("8x7B") == 56e9
    assert parse_size_label("1.5B") == 1.5e9
    assert parse_size_label("big") is None and parse_size_label(None) is None
    assert quantization_bits("Q4_K_M") == 4
    assert quantization_bits("IQ2_XS") == 2
    assert quantization_bits("BF16") == 16
    assert quantization_bits("unknown") is None


def test_the_prior_keeps_the_ranking_and_moves_the_mean_score_to_the_expected_error_rate() -> None:
    base, features = shipped(), calibration_features()
    for size in (0.27e9, 3e9, 70e9):
        prior = build_prior(base, traits(size), features, sha256="ab" * 32)
        mean_score = float(prior.scores(features).mean())
        assert mean_score == pytest.approx(1 - expected_accuracy(traits(size)), abs=1e-6)
        assert np.array_equal(
            np.argsort(prior.scores(features), kind="stable"),
            np.argsort(base.scores(features), kind="stable"),
        )
        assert is_prior(prior) and prior.meta["model_sha256"] == "ab" * 32
        assert prior.meta["base_model_sha256"] == BASE_MODEL_SHA256
        assert prior.words == base.words  # it reads the prompts as the shipped model does
    assert not is_prior(base)


def test_a_bigger_model_keeps_more_requests_local() -> None:
    base, features = shipped(), calibration_features()
    small = build_prior(base, traits(0.5e9), features)
    big = build_prior(base, traits(30e9), features)
    escalated_small = float((small.scores(features) > small.threshold).mean())
    escalated_big = float((big.scores(features) > big.threshold).mean())
    assert escalated_big < escalated_small
    assert 0.0 < small.threshold < 1.0 and 0.0 < big.threshold < 1.0


def test_the_policy_says_when_it_routes_on_a_prior() -> None:
    base, features = shipped(), calibration_features()
    prior = build_prior(base, ModelTraits(1e9, "gemma3", "Q4_K_M", instruct=False), features)
    policy = DifficultyPolicy(lambda: prior, threshold=None)
    hard = policy.evaluate(asked(HARD))
    assert hard.reason.startswith("difficulty(prior):")
    assert hard.score is not None
    symbol = ">" if hard.outcome == "cloud" else "<="
    assert hard.reason == f"difficulty(prior):{hard.score:.2f}{symbol}{prior.threshold:.2f}"
    calibrated = DifficultyPolicy(lambda: base, threshold=None)
    assert calibrated.evaluate(asked(HARD)).reason.startswith("difficulty:")
    easy = policy.evaluate(asked(EASY))
    assert easy.score is not None and hard.score > easy.score


def test_an_uncalibrated_file_runs_on_its_prior_until_a_calibration_appears(
    tmp_path: Path,
) -> None:
    served = tiny_model(arch="qwen2").write(tmp_path / "mine.gguf")
    home = tmp_path / "home"
    calibrated = CalibratedModel(home, lambda: served)
    prior = calibrated.look_up_now()
    assert prior is not None and is_prior(prior)
    status = calibrated.status()
    assert status.state == "prior" and status.sha256 == gguf_sha256(served)
    assert status.prior is prior and prior.meta["family"] == "qwen2"
    assert prior.meta["expected_accuracy"] == pytest.approx(
        expected_accuracy(ModelTraits.of_file(served))
    )
    # A calibration saved for the file (hybrid calibrate, or background calibration) replaces it.
    save(home, gguf_sha256(served), shipped())
    assert calibrated.reload() is not None
    after = calibrated.status()
    assert after.state == "found" and after.found is not None and after.found.source == "user"


def test_a_calibration_written_later_is_noticed_by_the_status_check(tmp_path: Path) -> None:
    served = tiny_model().write(tmp_path / "mine.gguf")
    home = tmp_path / "home"
    calibrated = CalibratedModel(home, lambda: served)
    calibrated.look_up_now()
    assert calibrated.status().state == "prior"
    save(home, gguf_sha256(served), shipped())
    # The status notices the file and starts a new look-up (on a thread): until it ends, the
    # state is "waiting"; running it here makes the outcome independent of the thread.
    assert calibrated.status().state in ("waiting", "found")
    calibrated.look_up_now()
    assert calibrated.status().state == "found"


def test_an_unreadable_header_leaves_the_policy_without_an_opinion(tmp_path: Path) -> None:
    served = tmp_path / "broken.gguf"
    served.write_bytes(b"GGUF" + b"\0" * 64)
    calibrated = CalibratedModel(tmp_path / "home", lambda: served)
    assert calibrated.look_up_now() is None
    status = calibrated.status()
    assert status.state == "missing" and status.problem is not None
    verdict = DifficultyPolicy(calibrated, threshold=None).evaluate(asked(HARD))
    assert verdict.outcome == "pass" and verdict.reason == "difficulty:uncalibrated"


def test_prior_for_file_reads_the_header(tmp_path: Path) -> None:
    served = tiny_model(arch="gemma3", chat_template=None).write(tmp_path / "m.gguf")
    prior = prior_for_file(served, "cd" * 32)
    assert prior.meta["family"] == "gemma3" and prior.meta["instruct"] is False
    assert prior.meta["quantization"] == "Q4_K_M"


@pytest.mark.parametrize(
    ("name", "parameters", "family", "quantization", "instruct"),
    [
        ("qwen2.5-32b-instruct", 32e9, "qwen2", "", True),
        ("Qwen2.5-7B-Instruct-Q4_K_M", 7e9, "qwen2", "Q4_K_M", True),
        ("llama3.1:8b", 8e9, "llama", "", True),
        ("mixtral-8x7b", 56e9, "", "", True),
        ("gemma-3-270m-base", 270e6, "gemma3", "", False),
        ("team-model", None, "", "", True),
    ],
)
def test_a_models_traits_are_read_from_its_name(
    name: str, parameters: float | None, family: str, quantization: str, instruct: bool
) -> None:
    traits = ModelTraits.of_name(name)
    assert (traits.parameters, traits.family, traits.quantization, traits.instruct) == (
        parameters,
        family,
        quantization,
        instruct,
    )


@pytest.mark.parametrize(
    ("name", "quantization", "bits"),
    [
        ("Qwen2.5-7B-Instruct-Q4_K_M", "Q4_K_M", 4),
        ("qwen2.5:7b-instruct-q4_K_M", "Q4_K_M", 4),
        ("llama3.2:3b-instruct-q8_0", "Q8_0", 8),
        ("llama3.3:70b-instruct-q3_K_S", "Q3_K_S", 3),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:IQ2_XXS", "IQ2_XXS", 2),
        ("mistral-7b-instruct-v0.2.Q5_K_M.gguf", "Q5_K_M", 5),
        ("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "Q4_K_M", 4),
        ("Model.i1-IQ3_XS", "IQ3_XS", 3),
        ("gemma-3-1b-it-bf16", "BF16", 16),
        ("model-f32", "F32", 32),
        # Read alike only since the prior asks discovery's reader:
        ("llama3.2:1b-instruct-fp16", "FP16", 16),  # Ollama spells 16-bit tags so
        ("Qwen3-4B-UD-Q4_K_XL", "UD-Q4_K_XL", 4),
        ("gpt-oss-20b-MXFP4", "MXFP4", 4),
        ("BitNet-2B-TQ1_0", "TQ1_0", 1),
        ("model_q4_k_m", "Q4_K_M", 4),
        ("llama3.1:8b", "", None),
        ("gemma3:27b-it-qat", "", None),
    ],
)
def test_the_prior_reads_a_names_quantization_as_discovery_does(
    name: str, quantization: str, bits: int | None
) -> None:
    read = ModelTraits.of_name(name).quantization
    assert read == (quant_label(name) or "") == quantization
    assert quantization_bits(read) == bits


def test_a_bigger_model_by_name_keeps_more_prompts() -> None:
    from hybrid.routing.difficulty.prior import prior_for_name

    messages = (Message("user", "Prove that there are infinitely many primes."),)
    big, small = prior_for_name("qwen2.5-32b-instruct"), prior_for_name("gemma3:270m")
    assert big.score(messages) < small.score(messages)
    assert not big.escalates(big.score(messages))
