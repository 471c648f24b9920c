"""framechain's configuration: TOML read into typed, validated, frozen dataclasses.

Every key has a default, and the defaults reproduce the reference generation of design.md, so an
empty file (or no file) is a valid configuration. Unknown keys and wrong types are errors that name
the key and the file. Bot tokens may also come from the environment, which wins over the file:
``FRAMECHAIN_DISCORD_TOKEN`` and ``FRAMECHAIN_TELEGRAM_TOKEN``. Tokens are held in ``Secret`` so
they never show in ``repr``, logs or error messages.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from shared import params

ENV_DISCORD_TOKEN = "FRAMECHAIN_DISCORD_TOKEN"
ENV_TELEGRAM_TOKEN = "FRAMECHAIN_TELEGRAM_TOKEN"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the file and the key."""


class Secret:
    """A string that never shows itself in repr/str (tokens)."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class LoraConfig:
    #: A LoRA .safetensors file, e.g. a 4-step distillation LoRA.
    path: str
    #: Strength the adapter is applied with.
    scale: float = 1.0
    #: Which expert(s) it loads into: "both", "high" (transformer) or "low" (transformer_2).
    target: Literal["both", "high", "low"] = "both"
    #: What it is for: "" a distillation/style LoRA (switches to lora_steps/lora_guidance);
    #: "svi" an SVI 2.0 Pro LoRA (one per expert), which makes ``continuity = "svi"`` available.
    role: Literal["", "svi"] = ""


@dataclass(frozen=True)
class GenerationConfig:
    #: "comfyui" renders on the ComfyUI servers of [comfyui], one worker slot per server.
    backend: Literal["wan", "preview", "comfyui"] = "wan"
    #: A ComfyUI ``models`` folder holding the four files of the reference workflow (experts in
    #: diffusion_models/, VAE in vae/, UMT5 in text_encoders/); with it, ``model`` is not used.
    comfyui_models: str = ""
    #: A diffusers Wan2.2 I2V folder or hub id, for whatever the single files below do not give.
    model: str = params.DEFAULT_MODEL
    #: ComfyUI single-file experts (.safetensors incl. fp8_scaled, or .gguf); empty = from
    #: comfyui_models, else from model.
    transformer: str = ""
    transformer_2: str = ""
    #: A diffusers transformer config (folder or config.json) for the single files; empty = read
    #: from the file's own tensor shapes.
    transformer_config: str = ""
    #: The Wan 2.1 VAE and UMT5-XXL encoder files; empty = from comfyui_models, else from model.
    vae: str = ""
    text_encoder: str = ""
    #: Tokenizer folder or hub id for a text-encoder file without its own ``spiece_model``;
    #: empty = the tokenizer/ of model.
    tokenizer: str = ""
    #: "fit" keeps the start image's aspect ratio within width*height pixels; "fixed" crops to it.
    size_mode: Literal["fit", "fixed"] = "fit"
    #: Segment size in pixels, multiples of 16 (with "fit", the pixel budget width*height).
    width: int = params.DEFAULT_WIDTH
    height: int = params.DEFAULT_HEIGHT
    #: Frames per segment: 81 (5 s at 16 fps), 65, 49 or 33, the lengths /settings offers.
    frames: int = params.DEFAULT_FRAMES
    #: Frames per second of every video.
    fps: int = params.DEFAULT_FPS
    #: Sampling steps per segment.
    steps: int = params.DEFAULT_STEPS
    #: CFG of the high-noise expert and of the low-noise expert.
    guidance: float = params.DEFAULT_GUIDANCE
    guidance_2: float = params.DEFAULT_GUIDANCE
    #: Shift of the flow-matching schedule, for both experts.
    shift: float = params.DEFAULT_SHIFT
    #: Steps whose timestep is at least boundary_ratio x 1000 go to the high-noise expert.
    boundary_ratio: float = params.DEFAULT_BOUNDARY_RATIO
    #: "euler" with the "simple" schedule (the reference workflow's), or UniPC on flow sigmas.
    sampler: Literal["euler", "unipc"] = "euler"
    #: The negative prompt of every segment (the standard Wan one).
    negative_prompt: str = params.WAN_NEGATIVE_PROMPT
    #: "random": a new seed per segment (reported); "fixed": always `seed`; "increment": seed+index.
    seed_policy: Literal["random", "fixed", "increment"] = "random"
    seed: int = 0
    #: Colour-drift control: match each segment to its own start image, the session's first
    #: image, or not at all; "auto" picks by continuity and chain position (shared.color_reference).
    color_match: Literal["auto", "start", "first", "off"] = "auto"
    color_strength: float = 1.0
    #: Match lightness too; false matches colour only, so a scene meant to darken may do so.
    color_lightness: bool = True
    #: Under color_match "auto" and frame continuity: the first segment (1-based) matched to the
    #: session's first picture; earlier ones follow their own start image.
    color_first_from: int = 4
    #: "auto" picks from the card's memory; "full", "expert_offload", "group_offload" force one.
    memory_profile: Literal["auto", "full", "expert_offload", "group_offload"] = "auto"
    #: A diffusers attention backend name (e.g. "flash", "sage"); empty = default.
    attention_backend: str = ""
    #: Regional compilation of the repeated transformer blocks (CUDA only).
    compile: bool = False
    loras: tuple[LoraConfig, ...] = ()
    #: Steps and CFG used instead of the above when any LoRA is configured (distillation LoRAs
    #: are made for few steps and no CFG).
    lora_steps: int = 4
    lora_guidance: float = 1.0
    #: Seconds the preview backend waits per step, to rehearse progress messages at a model's pace.
    preview_step_delay: float = 0.0
    #: Live previews (the step's prediction of the clean video, as a strip of frames) into the
    #: progress message, after about this share of the steps each (0.25: every quarter); 0 = none.
    #: They come no more often than progress edits (``progress_interval``) whatever the share.
    live_preview_every: float = 0.25
    #: For 32 GB machines: fp8_scaled experts stay in memory maps of their files (at most about one
    #: expert in RAM; the idle one is read back from disk when its turn comes, see the memory plan).
    low_ram: bool = False
    #: VAE precision: "auto" = float32 where the memory plan allows it, else bfloat16.
    vae_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    #: How a segment continues from the one before: "frame" from its last frame (the seed's way);
    #: "svi" from its last latent(s), anchored on the session's first picture (SVI 2.0 Pro; needs
    #: the SVI LoRAs in [[generation.loras]] with role = "svi"). Sessions may switch in /settings.
    continuity: Literal["frame", "svi"] = "frame"
    #: svi: latent frames of the previous take that condition the next (1 as published).
    svi_motion_latents: int = 1
    #: Smooth playback: 2 x fps (32) also gives each take a copy interpolated 2x with RIFE on the
    #: worker's device, and the final is joined from those; equal to fps (16) = off. The 16 fps
    #: masters stay the source of truth (review clips, hand-off frames, latents).
    final_fps: int = params.DEFAULT_FPS
    #: The RIFE 4.26 weights file (Practical-RIFE's flownet .pkl) that final_fps = 32 needs;
    #: never downloaded.
    rife_weights: str = ""

    @property
    def smooth_playback(self) -> bool:
        """Whether takes get a 2x copy and the final is joined at twice ``fps``."""
        return self.final_fps == 2 * self.fps

    @property
    def svi_available(self) -> bool:
        """Whether the SVI LoRAs are configured (``continuity = "svi"`` can be used)."""
        return any(lo.role == "svi" for lo in self.loras)

    @property
    def sampling_steps(self) -> int:
        """Steps per segment: a distillation LoRA is made for its own step count (an SVI LoRA is not)."""
        return self.lora_steps if self._speed_loras else self.steps

    @property
    def sampling_guidance(self) -> tuple[float, float]:
        """CFG of the high- and low-noise experts, as used (the LoRA's when one is configured)."""
        return (self.lora_guidance, self.lora_guidance) if self._speed_loras else (self.guidance, self.guidance_2)

    @property
    def _speed_loras(self) -> bool:
        return any(lo.role != "svi" for lo in self.loras)


@dataclass(frozen=True)
class WorkersConfig:
    #: One worker process per entry: "auto" (first CUDA device, else CPU), "cpu", "cuda:0", ...
    #: ("cpu:0", "cpu:1" run several CPU workers, e.g. to try the preview backend in parallel.)
    devices: tuple[str, ...] = ("auto",)
    #: Seconds to wait before restarting a worker that died, doubled on each further death.
    restart_backoff: float = 2.0


@dataclass(frozen=True)
class ComfyUIServerConfig:
    #: http(s)://host:port of a ComfyUI server (a path prefix behind a reverse proxy works).
    url: str
    #: Extra HTTP headers for this server, "Name: value" (e.g. a reverse proxy's auth).
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ComfyUIMappingConfig:
    """Where a user's API-format workflow takes each value: "node_id.input_name"."""

    image: str = ""
    prompt: str = ""
    negative_prompt: str = ""
    seed: tuple[str, ...] = ()
    width: tuple[str, ...] = ()
    height: tuple[str, ...] = ()
    length: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()
    #: CFG of the (high-noise) sampler(s), and of the low-noise one where they differ.
    cfg: tuple[str, ...] = ()
    cfg_2: tuple[str, ...] = ()
    #: The node whose output images are the frames (a node id, no input name).
    output: str = ""


@dataclass(frozen=True)
class ComfyUIConfig:
    #: One worker slot per server.
    urls: tuple[str, ...] = ()
    #: Servers with their own headers, as [[comfyui.servers]] tables (in addition to urls).
    servers: tuple[ComfyUIServerConfig, ...] = ()
    #: Headers sent to every server ("Name: value").
    headers: tuple[str, ...] = ()
    #: The seed workflow's model files, as the server's loaders list them.
    unet_high: str = "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"
    unet_low: str = "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors"
    text_encoder: str = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
    vae: str = "wan_2.1_vae.safetensors"
    #: The UNETLoader nodes' weight_dtype ("default": as the file stores it).
    weight_dtype: str = "default"
    #: How frames come back, both lossless PNG: "PreviewImage" (the server's temp folder) or
    #: "SaveImage" (kept in its output folder).
    frames_output: Literal["PreviewImage", "SaveImage"] = "PreviewImage"
    #: Your own API-format workflow instead of the reference graph, with its mapping.
    workflow: Path | None = None
    mapping: ComfyUIMappingConfig = field(default_factory=ComfyUIMappingConfig)
    #: Seconds: to connect, per HTTP request, per job, and without any answer before a server
    #: counts as gone (its worker then exits and the job is retried on another slot).
    connect_timeout: float = 10.0
    request_timeout: float = 60.0
    job_timeout: float = 3600.0
    server_lost_after: float = 30.0
    #: Seconds between /history polls while the websocket is down (and cancel checks).
    poll_interval: float = 1.0

    @property
    def server_list(self) -> tuple[ComfyUIServerConfig, ...]:
        """Every server, ``urls`` first; the shared headers come before a server's own."""
        listed = [ComfyUIServerConfig(url=url) for url in self.urls] + list(self.servers)
        return tuple(ComfyUIServerConfig(url=s.url, headers=self.headers + s.headers) for s in listed)


@dataclass(frozen=True)
class DiscordConfig:
    #: Bot token; FRAMECHAIN_DISCORD_TOKEN wins. Discord runs when a token is set.
    token: Secret = field(default_factory=Secret)
    #: Guilds to sync slash commands to instantly; empty = global commands.
    guild_ids: tuple[int, ...] = ()
    #: Who may use the bot (closed by default: with all of these empty, only admin_ids). A user
    #: is let in by their user id, by any of their roles, or by being in one of the guilds.
    allowed_user_ids: tuple[int, ...] = ()
    allowed_role_ids: tuple[int, ...] = ()
    allowed_guild_ids: tuple[int, ...] = ()
    #: Users who may use the bot, act on anyone's session and see the whole queue.
    admin_ids: tuple[int, ...] = ()
    #: Anyone can use your GPU: serve every Discord user who shares a server with the bot.
    open: bool = False
    #: Open sessions in private threads where the server allows it.
    private_threads: bool = True
    #: Keep uploads under this many MB (0 = the server's own limit, 10 MiB unboosted).
    upload_limit_mb: float = 0.0


@dataclass(frozen=True)
class TelegramConfig:
    #: Bot token; FRAMECHAIN_TELEGRAM_TOKEN wins. Telegram runs when a token is set.
    token: Secret = field(default_factory=Secret)
    #: Point these at a local Bot API server to upload up to 2000 MB instead of 50 MB.
    api_base_url: str = "https://api.telegram.org/bot"
    api_file_url: str = "https://api.telegram.org/file/bot"
    #: Upload limit in MB; 0 = 50 on the public Bot API, 2000 on a local one.
    upload_limit_mb: int = 0
    #: Who may use the bot (closed by default: with both empty, only admin_ids): these users
    #: anywhere, and anyone in these chats/groups (ids of groups are negative).
    allowed_user_ids: tuple[int, ...] = ()
    allowed_chat_ids: tuple[int, ...] = ()
    #: Users who may use the bot, act on anyone's session and see the whole queue.
    admin_ids: tuple[int, ...] = ()
    #: Anyone can use your GPU: serve every Telegram user who finds the bot.
    open: bool = False


@dataclass(frozen=True)
class LimitsConfig:
    #: Longest prompt accepted, in characters.
    prompt_chars: int = 2000
    #: Largest start image accepted, in bytes and in pixels (guards against decompression bombs).
    image_bytes: int = 20 * 1024 * 1024
    image_pixels: int = 50_000_000
    #: Smallest side and most uneven sides (long side / short side) of a start image.
    image_min_side: int = 64
    image_max_aspect: float = 4.0
    #: Most decompressed text (PNG text chunks, an ICC profile) a start image may carry.
    image_text_bytes: int = 1024 * 1024
    #: Most approved segments one session may have.
    segments_per_session: int = 60
    #: Jobs (queued or running) one user may have at once, and all users together: a new take
    #: beyond either is refused with the limit named, never dropped.
    queued_jobs_per_user: int = 4
    queued_jobs_total: int = 100
    #: Sessions not finished or cancelled one user may have at once (across chats).
    active_sessions_per_user: int = 3
    #: GPU time per user per day, in seconds of the worker's own timings (0 = no limit); counted
    #: from ``quota_reset_hour_utc`` o'clock UTC each day. Admins are exempt from every quota.
    gpu_seconds_per_user_per_day: int = 3600
    quota_reset_hour_utc: int = 0
    #: A refused user (not in the allow lists) is told so at most once per this many hours,
    #: across restarts.
    refusal_notice_hours: float = 6.0
    #: Upper bounds a user may choose in /settings.
    max_steps: int = 50
    max_pixels: int = 1280 * 720


@dataclass(frozen=True)
class StorageConfig:
    #: Free space (MB) the data dir must keep before a segment is queued; a join needs this much
    #: plus twice the size of the masters it joins (the final and a copy made to fit a limit).
    #: The default leaves room for a few masters at the reference size (tens of MB each).
    min_free_mb: int = 500
    #: Remove the media of sessions finished, cancelled or abandoned (no activity) longer ago
    #: than this many days; 0 keeps everything. The database keeps the history.
    retention_days: int = 0
    #: Keep the final videos (final*.mp4) of finished sessions when removing their media.
    keep_finals: bool = True
    #: Hours between automatic prunes while the bot runs (with retention_days set).
    prune_interval_hours: float = 6.0


#: The web user on a loopback address without tokens: the person at the keyboard.
LOCAL_WEB_USER = "local"


@dataclass(frozen=True)
class WebToken:
    #: The access token a browser presents (``?token=`` once, then a cookie); never logged.
    token: Secret = field(default_factory=Secret)
    #: The user this token is, in sessions, quotas and access (letters, digits, ``_.-``).
    user: str = ""
    #: May act on anyone's session, is exempt from quotas and sees the operator page.
    admin: bool = False


@dataclass(frozen=True)
class WebConfig:
    #: host:port the web chat (and the operator page) listens on; empty = off. On loopback with
    #: no tokens the person at the keyboard is the one local user (owner and admin); any other
    #: address needs tokens.
    listen: str = ""
    #: Access tokens, each a user: [[web.tokens]] token = "...", user = "alice", admin = false.
    #: With any set, every request without a valid one is refused, on loopback too.
    tokens: tuple[WebToken, ...] = ()
    #: Serve the read-only operator page (/ops: workers, queue, sessions, videos) to admins.
    operator_page: bool = False

    @property
    def admins(self) -> frozenset[str]:
        """Web users who are admins: the one local user when no tokens are configured."""
        if not self.tokens:
            return frozenset({LOCAL_WEB_USER})
        return frozenset(t.user for t in self.tokens if t.admin)

    @property
    def host_port(self) -> tuple[str, int]:
        """``listen`` split; checked by load_config."""
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """A host name or address that only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Config:
    #: Where sessions' media and the database live.
    data_dir: Path = Path("data")
    #: SQLite file; empty = <data_dir>/framechain.db.
    database: Path | None = None
    #: How much the log says.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    comfyui: ComfyUIConfig = field(default_factory=ComfyUIConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    web: WebConfig = field(default_factory=WebConfig)

    @property
    def worker_slots(self) -> tuple[str, ...]:
        """One dispatcher slot per local device and per ComfyUI server ("comfyui:N").

        With backend "comfyui" only the servers serve; with another backend, servers listed in
        [comfyui] serve beside the local devices."""
        servers = tuple(f"comfyui:{i}" for i in range(len(self.comfyui.server_list)))
        if self.generation.backend == "comfyui":
            return servers
        return self.workers.devices + servers

    @property
    def database_path(self) -> Path:
        return self.database if self.database is not None else self.data_dir / "framechain.db"

    @property
    def enabled_platforms(self) -> list[str]:
        chats = [name for name in ("discord", "telegram") if getattr(self, name).token]
        return chats + (["web"] if self.web.listen else [])


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the TOML file at ``path`` (None = defaults only) and the token environment variables."""
    env = os.environ if env is None else env
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{source}: file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    config = _build(Config, raw, source, "")
    base = Path(path).resolve().parent if path is not None else Path.cwd()
    config = _resolve_paths(config, base)
    config = _apply_env(config, env)
    _check(config, source)
    return config


def token_file_warning(path: str | os.PathLike[str] | None) -> str | None:
    """A warning when the configuration file at ``path`` holds a bot token and others than its
    owner may read it (group or world permission bits), else None."""
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
        mode = os.stat(path).st_mode
    except (OSError, tomllib.TOMLDecodeError):
        return None
    holding = [name for name in ("discord", "telegram") if isinstance(raw.get(name), dict) and raw[name].get("token")]
    if not holding or not mode & 0o077:
        return None
    return (
        f"{path} holds the {' and '.join(holding)} token{'s' if len(holding) > 1 else ''} and can be read by "
        f"other users (mode {mode & 0o777:o}): run `chmod 600 {path}`, or move the token to "
        f"{ENV_DISCORD_TOKEN if holding[0] == 'discord' else ENV_TELEGRAM_TOKEN} in the environment"
    )


def _resolve_paths(config: Config, base: Path) -> Config:
    # Relative paths in a file mean relative to that file, so a config works from any directory.
    # Resolved, so that "../out/demo-data" is shown as the folder it is (logs, check, doctor).
    data_dir = config.data_dir if config.data_dir.is_absolute() else (base / config.data_dir).resolve()
    database = config.database
    if database is not None and not database.is_absolute():
        database = (base / database).resolve()
    workflow = config.comfyui.workflow
    if workflow is not None and not workflow.is_absolute():
        config = dataclasses.replace(config, comfyui=dataclasses.replace(config.comfyui, workflow=base / workflow))
    return dataclasses.replace(config, data_dir=data_dir, database=database)


def _apply_env(config: Config, env: Mapping[str, str]) -> Config:
    discord_token = env.get(ENV_DISCORD_TOKEN)
    telegram_token = env.get(ENV_TELEGRAM_TOKEN)
    if discord_token:
        config = dataclasses.replace(
            config, discord=dataclasses.replace(config.discord, token=Secret(discord_token.strip()))
        )
    if telegram_token:
        config = dataclasses.replace(
            config, telegram=dataclasses.replace(config.telegram, token=Secret(telegram_token.strip()))
        )
    return config


def _check(config: Config, source: str) -> None:
    g = config.generation
    limits = config.limits

    def fail(key: str, why: str) -> typing.NoReturn:
        raise ConfigError(f"{source}: {key}: {why}")

    try:
        params.check_side("width", g.width)
        params.check_side("height", g.height)
    except params.ParameterError as exc:
        fail("generation." + str(exc).split(" ", 1)[0], str(exc))
    try:
        params.check_frames(g.frames)
    except params.ParameterError as exc:
        fail("generation.frames", str(exc))
    if g.frames not in params.SECONDS_TO_FRAMES.values():
        # The chat offers whole seconds only (/settings seconds=2..5); any other default would
        # be silently replaced there. `framechain render --frames` still takes any 4k+1.
        chat_frames = ", ".join(f"{f} ({s} s)" for s, f in params.SECONDS_TO_FRAMES.items())
        fail("generation.frames", f"must be one of the segment lengths the chat offers: {chat_frames}; got {g.frames}")
    positive = {
        "generation.fps": g.fps,
        "generation.steps": g.steps,
        "generation.lora_steps": g.lora_steps,
        "limits.prompt_chars": limits.prompt_chars,
        "limits.image_bytes": limits.image_bytes,
        "limits.image_pixels": limits.image_pixels,
        "limits.image_text_bytes": limits.image_text_bytes,
        "limits.segments_per_session": limits.segments_per_session,
        "limits.queued_jobs_per_user": limits.queued_jobs_per_user,
        "limits.queued_jobs_total": limits.queued_jobs_total,
        "limits.active_sessions_per_user": limits.active_sessions_per_user,
        "limits.max_steps": limits.max_steps,
        "limits.max_pixels": limits.max_pixels,
        "limits.refusal_notice_hours": limits.refusal_notice_hours,
    }
    for key, value in positive.items():
        if value <= 0:
            fail(key, f"must be positive, got {value}")
    if limits.image_min_side < 16:
        fail("limits.image_min_side", f"must be at least 16 (the smallest segment side), got {limits.image_min_side}")
    if limits.image_max_aspect < 1.0:
        fail("limits.image_max_aspect", f"must be at least 1 (a square), got {limits.image_max_aspect}")
    if (gpu_seconds := limits.gpu_seconds_per_user_per_day) < 0:
        fail("limits.gpu_seconds_per_user_per_day", f"must be 0 (no limit) or positive, got {gpu_seconds}")
    if not 0 <= limits.quota_reset_hour_utc <= 23:
        fail("limits.quota_reset_hour_utc", f"must be an hour from 0 to 23, got {limits.quota_reset_hour_utc}")
    for key, fvalue in (
        ("generation.guidance", g.guidance),
        ("generation.guidance_2", g.guidance_2),
        ("generation.lora_guidance", g.lora_guidance),
    ):
        if not 0.0 <= fvalue <= 30.0:
            fail(key, f"must be between 0 and 30, got {fvalue}")
    if g.guidance <= 1.0 < g.guidance_2:
        # diffusers turns CFG on for both experts only when the first guidance is above 1.
        fail(
            "generation.guidance_2",
            f"{g.guidance_2} has no effect while generation.guidance is {g.guidance}"
            " (a guidance <= 1 turns CFG off for both experts)",
        )
    if g.shift <= 0:
        fail("generation.shift", f"must be positive, got {g.shift}")
    if not 0.0 <= g.boundary_ratio <= 1.0:
        fail("generation.boundary_ratio", f"must be between 0 and 1, got {g.boundary_ratio}")
    if not 0.0 <= g.color_strength <= 1.0:
        fail("generation.color_strength", f"must be between 0 and 1, got {g.color_strength}")
    if g.color_first_from < 1:
        fail("generation.color_first_from", f"must be at least 1, got {g.color_first_from}")
    if not 0.0 <= g.preview_step_delay <= 60.0:
        fail("generation.preview_step_delay", f"must be between 0 and 60, got {g.preview_step_delay}")
    if not 0.0 <= g.live_preview_every <= 1.0:
        fail("generation.live_preview_every", f"must be between 0 and 1, got {g.live_preview_every}")
    if g.seed < 0:
        fail("generation.seed", f"must not be negative, got {g.seed}")
    if g.continuity == "svi" and not g.svi_available:
        fail("generation.continuity", 'is "svi" but no [[generation.loras]] has role = "svi" (the SVI 2.0 Pro LoRAs)')
    if not 1 <= g.svi_motion_latents <= 4:
        fail("generation.svi_motion_latents", f"must be from 1 to 4, got {g.svi_motion_latents}")
    if g.final_fps not in (g.fps, 2 * g.fps):
        fail("generation.final_fps", f"must be {g.fps} (fps: off) or {2 * g.fps} (2x interpolated), got {g.final_fps}")
    if g.smooth_playback and not g.rife_weights:
        fail("generation.final_fps", f"is {g.final_fps} but generation.rife_weights names no RIFE 4.26 weights file")
    if g.smooth_playback and not Path(g.rife_weights).expanduser().is_file():
        fail("generation.rife_weights", f"{g.rife_weights} is not a file (the RIFE 4.26 flownet .pkl)")
    if g.width * g.height > limits.max_pixels:
        fail(
            "generation.width",
            f"width*height ({g.width * g.height}) exceeds limits.max_pixels ({limits.max_pixels})",
        )
    if g.steps > limits.max_steps:
        fail("generation.steps", f"{g.steps} exceeds limits.max_steps ({limits.max_steps})")
    if not config.workers.devices:
        fail("workers.devices", "needs at least one device")
    for device in config.workers.devices:
        kind, _, number = device.partition(":")
        if device not in ("auto", "cpu") and not (kind in ("cuda", "cpu") and number.isdigit()):
            fail("workers.devices", f"{device!r} is not 'auto', 'cpu', 'cpu:N' or 'cuda:N'")
    if len(set(config.workers.devices)) != len(config.workers.devices):
        fail("workers.devices", "lists a device twice")
    if config.workers.restart_backoff < 0:
        fail("workers.restart_backoff", "must not be negative")
    for key, url in (
        ("telegram.api_base_url", config.telegram.api_base_url),
        ("telegram.api_file_url", config.telegram.api_file_url),
    ):
        if not url.startswith(("http://", "https://")):
            fail(key, f"must be an http(s) URL, got {url!r}")
    _check_comfyui(config, fail)
    if config.discord.upload_limit_mb < 0:
        fail("discord.upload_limit_mb", "must not be negative")
    storage = config.storage
    for key, amount in (
        ("storage.min_free_mb", storage.min_free_mb),
        ("storage.retention_days", storage.retention_days),
    ):
        if amount < 0:
            fail(key, f"must not be negative, got {amount}")
    if storage.prune_interval_hours <= 0:
        fail("storage.prune_interval_hours", f"must be positive, got {storage.prune_interval_hours}")
    if config.telegram.upload_limit_mb < 0:
        fail("telegram.upload_limit_mb", "must not be negative")
    _check_web(config.web, fail)


_WEB_USER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _check_web(web: WebConfig, fail: typing.Callable[[str, str], typing.NoReturn]) -> None:
    users = [t.user for t in web.tokens]
    for entry in web.tokens:
        if not _WEB_USER.match(entry.user):
            fail("web.tokens", f"each token needs a user of letters, digits and _.- (got {entry.user!r})")
        if len(entry.token.get()) < 16:
            fail("web.tokens", f"the token of {entry.user} is shorter than 16 characters")
    if len(set(users)) != len(users):
        fail("web.tokens", "names a user twice")
    if len({t.token for t in web.tokens}) != len(web.tokens):
        fail("web.tokens", "lists a token twice")
    if not web.listen:
        return
    host, sep, port = web.listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        fail("web.listen", f"must be host:port, e.g. 127.0.0.1:8765, got {web.listen!r}")
    if not is_loopback(host.strip("[]")) and not web.tokens:
        fail(
            "web.listen",
            f"{host} can be reached from other machines: configure [[web.tokens]] (each a user), "
            "or listen on 127.0.0.1",
        )


def _check_comfyui(config: Config, fail: typing.Callable[[str, str], typing.NoReturn]) -> None:
    c = config.comfyui
    servers = c.server_list
    if config.generation.backend == "comfyui" and not servers:
        fail("comfyui.urls", 'generation.backend = "comfyui" needs at least one server URL')
    urls = [s.url.rstrip("/") for s in servers]
    for url in urls:
        if not url.startswith(("http://", "https://")):
            fail("comfyui.urls", f"must be http(s) URLs, got {url!r}")
    if len(set(urls)) != len(urls):
        fail("comfyui.urls", "lists a server twice")
    for server in servers:
        for header in server.headers:
            name, sep, _ = header.partition(":")
            if not sep or not name.strip():
                fail("comfyui.headers", "each header is 'Name: value'")
    for key in ("connect_timeout", "request_timeout", "job_timeout", "server_lost_after", "poll_interval"):
        if getattr(c, key) <= 0:
            fail(f"comfyui.{key}", "must be positive")
    m = c.mapping
    if c.workflow is not None:
        for role in ("image", "prompt", "output"):
            if not getattr(m, role):
                fail(f"comfyui.mapping.{role}", "is required with comfyui.workflow")
    for role in ("image", "prompt", "negative_prompt", "seed", "width", "height", "length", "steps", "cfg", "cfg_2"):
        value = getattr(m, role)
        for target in (value,) if isinstance(value, str) else value:
            node, dot, name = target.partition(".")
            if target and (not dot or not node or not name):
                fail(f"comfyui.mapping.{role}", f"{target!r} is not 'node_id.input_name'")


# --- generic TOML -> dataclass conversion -----------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        Path: "a path string",
        Secret: "a string",
        type(None): "empty",
    }.get(tp, str(tp))


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = get_origin(tp)

    def wrong() -> ConfigError:
        shown = "a table" if isinstance(value, dict) else repr(value)
        if tp is Secret:
            shown = "a " + type(value).__name__  # never echo a token back
        return ConfigError(f"{source}: {key}: expected {_type_name(tp)}, got {shown}")

    if origin is Literal:
        if value not in get_args(tp) or isinstance(value, bool):
            raise wrong()
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if type(None) in args and value == "":
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, source, key)
            except ConfigError:
                pass
        raise wrong()
    if origin is tuple:
        if not isinstance(value, list):
            raise wrong()
        (item,) = [a for a in get_args(tp) if a is not Ellipsis]
        return tuple(_convert(item, v, source, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise wrong()
        return _build(typing.cast(type, tp), value, source, key + ".")
    if tp is bool:
        if not isinstance(value, bool):
            raise wrong()
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise wrong()
        return value
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise wrong()
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise wrong()
        return value
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise wrong()
        return Path(value).expanduser()
    if tp is Secret:
        if not isinstance(value, str):
            raise wrong()
        return Secret(value.strip())
    raise TypeError(f"unsupported config type {tp!r} for {key}")


def _build(cls: type, raw: Mapping[str, Any], source: str, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown key {prefix}{unknown[0]}")
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in raw
    ]
    if missing:
        raise ConfigError(f"{source}: {prefix}{missing[0]} is required")
    kwargs = {name: _convert(hints[name], value, source, prefix + name) for name, value in raw.items()}
    return cls(**kwargs)
