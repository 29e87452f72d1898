"""The ``[routing]`` settings: each policy of the router, its knobs, and its off switch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ModelStage = Literal["band", "every", "off"]
"""When the difficulty policy asks the model stage: in its band, for every request, or never."""


class PrivacySettings(BaseModel):
    """Keep personal and secret data on this machine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="Scan prompts for personal and secret data.")
    detectors: list[str] | None = Field(
        default=None,
        description="Detectors to run (e.g. email, payment_card, api_key); unset runs them all.",
    )
    patterns: dict[str, str] = Field(
        default_factory=dict, description="Extra detectors: name = regular expression."
    )
    paths: list[str] = Field(
        default_factory=list,
        description="Path prefixes whose mention keeps a request local (~ is expanded).",
    )
    allow_cloud: bool = Field(
        default=False,
        description=(
            "Let a request with private data go to the cloud when the local model cannot "
            "serve it (off: such a request is refused)."
        ),
    )
    allow_lan: bool = Field(
        default=False,
        description=(
            'Let a request with private data go to LAN servers marked privacy = "trusted" '
            "(never to the cloud, unless allow_cloud is on too)."
        ),
    )


class CapacitySettings(BaseModel):
    """Escalate when this machine is too busy to answer in time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="Route on live load and predicted latency.")
    latency_target_s: float = Field(
        default=20.0,
        gt=0,
        description="Predicted local completion time (queue + prefill + decode) above this "
        "goes to the cloud.",
    )
    max_other_cpu_percent: float = Field(
        default=85.0,
        gt=0,
        le=100,
        description="CPU load from other programs above this goes to the cloud.",
    )
    max_memory_percent: float = Field(
        default=95.0, gt=0, le=100, description="RAM in use above this goes to the cloud."
    )
    min_battery_percent: float = Field(
        default=20.0,
        ge=0,
        le=100,
        description="On battery below this charge, requests go to the cloud.",
    )


class ToggleSettings(BaseModel):
    """A policy with nothing to set but its switch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="Run this policy.")


class DifficultySettings(BaseModel):
    """Escalate prompts the local model is likely to get wrong."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="Score prompts with the difficulty model.")
    threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "Scores above this go to the cloud; lower keeps less local. Unset: the threshold "
            "calibrated for the installed model."
        ),
    )
    model_stage: ModelStage = Field(
        default="band",
        description=(
            "When the calibration carries a probe, let the local model's own view of the "
            "prompt settle the scores the text features are unsure of (band: those in the "
            "probe's band), or every request's (every: each pays its prompt's prefill before "
            "the decision, asked only while a slot is free); a local answer then reuses that "
            "prefill. off: the feature score alone decides. true/false still mean band/off."
        ),
    )

    @field_validator("model_stage", mode="before")
    @classmethod
    def _switch(cls, value: object) -> object:
        """``true``/``false`` (the setting's older form) mean ``band``/``off``."""
        if isinstance(value, bool):
            return "band" if value else "off"
        if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
            return "band" if value.strip().lower() == "true" else "off"
        return value

    neighbours: int = Field(
        default=10,
        ge=0,
        le=256,
        description=(
            "Read each feature score beside those of the recent requests most like it: the "
            "score is 0.2 x its own plus 0.8 x the mean of this many nearest among the last 256 "
            "(by the cosine of their text features, at least 0.3; kept in memory, never the "
            "text). 0: each prompt is scored alone."
        ),
    )
    labelled_neighbours: int = Field(
        default=10,
        ge=0,
        le=256,
        description=(
            "Then read it beside the labelled requests (feedback, shadow, cascade) most like "
            "it (those a refit learned from by the out-of-fold scores it recorded of them): "
            "the score moves by n / (n + 5) x "
            "how far the model was off on the n nearest, at most this many (cosine at least "
            "0.3), once 5 of those labelled requests were ones the router escalated "
            "(routing.learn.local_shadow_rate labels them); the last 1000 labelled requests are "
            "read from the ledger once the model is loaded, then every minute. 0: labels play "
            "no part until a refit learns from them."
        ),
    )
    yes_no: bool = Field(
        default=True,
        description=(
            'A prompt that asks for "yes or no" (or "true or false") is one a guess gets right '
            "half the time: its score, the chance the local model gets it wrong, is halved, "
            "after the readings above (lettered options are left as they are; "
            "docs/router-eval.md says why). false: scored as any prompt."
        ),
    )


class CascadeSettings(BaseModel):
    """Answer locally first; escalate answers the local model was unsure of (on by default;
    it acts only when a cloud model or a LAN server can take the request)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=True,
        description="With a cloud or a LAN server configured, read the answers the router keeps "
        "local before sending them, whole ones to their end and streamed ones as far as their "
        "first words (a stream's first byte waits for them): unsure or declining answers, and "
        "answers outside the options the prompt offered, escalate (answers held to JSON are "
        "not read). false sends local answers unread and streams them from their first token.",
    )
    min_confidence: float = Field(
        default=0.35,
        gt=0,
        lt=1,
        description="Below this geometric-mean token probability, the local answer is "
        "discarded and a LAN server or the cloud answers (0.35 ranked real prompts best in "
        "docs/router-eval.md's grid; higher values discard more answers, most of them wrong). "
        "An answer of yes or no to a question asking for one stands whatever its confidence.",
    )
    escalate_declined: bool = Field(
        default=True,
        description="A local answer, whole or streamed, that opens by declining (\"I'm "
        'sorry, I can\'t answer this.", "I don\'t know.") is discarded and the cloud answers, '
        "however confident the model was.",
    )
    escalate_outside_options: bool = Field(
        default=True,
        description="When the last user turn offers a closed set of answers (two or more "
        'lettered options on their own lines, "A) ..." "B) ...", in a turn that asks for a '
        'choice; or "yes or no", "true or false"), a local answer, whole or streamed, that '
        'opens with none of them ("I think it is Paris" to a yes-or-no question) is '
        "discarded and the cloud answers, however confident the model was. Only text "
        "answers to chat requests are read for it (not tool calls, not JSON output).",
    )


class CalibrationSettings(BaseModel):
    """Fit the difficulty router to a model that has no calibration, while serving."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    background: bool = Field(
        default=True,
        description=(
            "When the served model has no calibration, answer the calibration set on it in the "
            "background, only while no request waits or runs, and adopt the fit when it beats "
            "the prior on held-out items (off: the model stays on its prior until `hybrid "
            "calibrate` is run)."
        ),
    )
    per_category: int = Field(
        default=60,
        ge=2,
        le=200,
        description=(
            "Calibration items per category (9 categories) for background calibration; the "
            "default matches `hybrid calibrate`, so either can reuse the other's answers."
        ),
    )


class LearnSettings(BaseModel):
    """Learning from traffic: what is kept for refitting the difficulty model, shadow
    sampling, and refitting while serving (``hybrid calibrate --from-ledger`` refits from the
    same)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_signals: int = Field(
        default=10_000,
        ge=0,
        description="Keep the prompt features (never the text) of this many most recent "
        "scored requests in the ledger, for refitting; 0 keeps none.",
    )
    prompt_vectors: bool = Field(
        default=False,
        description="Keep the local model's vector of each prompt it answers (and of each "
        "escalated prompt it answers again for a local shadow) with the request's features, "
        "so that a refit from labelled requests (feedback, shadow) can "
        "refit the model stage too. Read in the context that answers (no second prefill, no "
        "prompt token evaluated again), it still delays each such answer's first token by the "
        "hidden state's read (a few ms); false keeps a vector only when the model stage "
        "decided.",
    )
    shadow_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of local answers also sent to the cloud target (with no cloud, to a "
        "LAN server), after the client has its answer, to grade the local answer against (0: "
        "off). Costs cloud spend, counted against the budget (a LAN server's answer costs "
        "lan.usd_per_1m_tokens); private requests are never sent.",
    )
    local_shadow_rate: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Share of the requests the router escalated that the local model also "
        "answers, in the background at low priority (only while no client request waits or "
        "runs), after the client has the answer of the cloud (or of a LAN server), to grade "
        "the local answer against it "
        "(0: off). Costs no cloud call and no spend, only the local model's idle time (its "
        "electricity is recorded as the request's local_shadow ledger leg); without it, labels "
        "come only from the requests kept local, the ones the router already finds easiest.",
    )
    shadow_agreement: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Without a judge, a local answer agrees with the cloud's (is labelled "
        "good) when their normalised word overlap (F1) reaches this, on the words each adds to "
        "the request's question when the cloud's answer adds any.",
    )
    judge_model: str | None = Field(
        default=None,
        description="A model that grades shadow answers instead of the word overlap: a cloud "
        "model (provider/model) or a LAN server's (server/model, the server's [[lan.servers]] "
        "name); unset: no judge.",
    )
    refit_after: int = Field(
        default=50,
        ge=0,
        description="While serving, refit the served model's difficulty model from the ledger "
        "(as `hybrid calibrate --from-ledger` does) each time this many more labelled requests "
        "a refit can use have arrived, and use the refit at once when it is adopted; 0: only "
        "on demand (the labelled requests are still read, see "
        "routing.difficulty.labelled_neighbours).",
    )

    @field_validator("judge_model")
    @classmethod
    def _judge_is_qualified(cls, value: str | None) -> str | None:
        if value is not None:
            provider, _, model = value.partition("/")
            if not provider or not model:
                raise ValueError("must be provider/model, e.g. openai/gpt-4.1-mini")
        return value


class RoutingSettings(BaseModel):
    """How hybrid decides between the local model and the cloud."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    privacy: PrivacySettings = Field(default_factory=PrivacySettings, description="Privacy.")
    capability: ToggleSettings = Field(
        default_factory=ToggleSettings,
        description="Send what the local model cannot do (images, audio, tools) to the cloud.",
    )
    length: ToggleSettings = Field(
        default_factory=ToggleSettings,
        description="Send prompts that do not fit the local context to the cloud.",
    )
    capacity: CapacitySettings = Field(default_factory=CapacitySettings, description="Capacity.")
    difficulty: DifficultySettings = Field(
        default_factory=DifficultySettings, description="Difficulty."
    )
    cascade: CascadeSettings = Field(default_factory=CascadeSettings, description="Cascade.")
    learn: LearnSettings = Field(
        default_factory=LearnSettings, description="Learning from traffic."
    )
    calibration: CalibrationSettings = Field(
        default_factory=CalibrationSettings, description="Background calibration."
    )
