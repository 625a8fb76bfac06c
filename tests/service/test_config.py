"""The models file: validated once, errors name the field, keys come only from the environment."""

from __future__ import annotations

import copy
import dataclasses
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import pytest
import yaml
from translane import settings
from translane.config import Config, ConfigError, default_models_text, load_config, parse_config
from translane.settings import build, declaration, non_negative, read, setting

SLOW = "doubao-seed-translation-250915"


def shipped() -> dict[str, Any]:
    return tomllib.loads(default_models_text())


def test_shipped_file_describes_the_ark_models() -> None:
    cfg = load_config(env={})
    slow = cfg.models[SLOW]
    assert (slow.api_style, slow.lane, slow.rpm, slow.tpm, slow.max_concurrency) == (
        "responses",
        "slow",
        5000,
        500000,
        80,
    )
    assert (slow.max_input_tokens, slow.max_output_tokens, slow.context_tokens) == (1000, 3000, 4000)
    assert (slow.input_price_per_mtok, slow.output_price_per_mtok, slow.currency) == (1.2, 3.6, "CNY")
    assert cfg.lanes["slow"].max_concurrency == 80 and cfg.lanes["fast"].max_concurrency == 500
    fast = cfg.models["deepseek-v3-2-251201"]
    assert (fast.api_style, fast.lane, fast.rpm, fast.max_concurrency) == ("chat_completions", "fast", 30000, 500)
    assert slow.fallbacks  # a fallback order exists
    assert cfg.default_model == SLOW


def test_key_comes_from_the_named_variable_and_never_shows() -> None:
    cfg = load_config(env={"ARK_API_KEY": "sk-very-secret"})
    provider = cfg.providers["ark"]
    assert provider.api_key == "sk-very-secret" and provider.api_key_env == "ARK_API_KEY"
    assert "sk-very-secret" not in repr(cfg) and "sk-very-secret" not in str(provider)
    assert "sk-very-secret" not in default_models_text()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["models"][SLOW].update(rpm=-5), f"models.{SLOW}.rpm: must be > 0, got -5"),
        (lambda d: d["models"][SLOW].update(rpm="lots"), f"models.{SLOW}.rpm: expected int"),
        (lambda d: d["models"][SLOW].update(rmp=5), f"models.{SLOW}.rmp: unknown field"),
        (lambda d: d["models"][SLOW].pop("tpm"), f"models.{SLOW}.tpm: required field is missing"),
        (lambda d: d["models"][SLOW].update(api_style="soap"), f"models.{SLOW}.api_style: must be one of"),
        (lambda d: d["models"][SLOW].update(provider="acme"), f"models.{SLOW}.provider: unknown provider 'acme'"),
        (lambda d: d["models"][SLOW].update(lane="medium"), f"models.{SLOW}.lane: unknown lane 'medium'"),
        (lambda d: d["models"][SLOW].update(fallbacks=["nope"]), f"models.{SLOW}.fallbacks: 'nope'"),
        (lambda d: d["providers"]["ark"].update(base_url="ark.example"), "providers.ark.base_url: must start with"),
        (lambda d: d["lanes"]["slow"].update(max_concurrency=0), "lanes.slow.max_concurrency: must be > 0"),
        (lambda d: d.update(default_model="gpt-nope"), "default_model: 'gpt-nope' is not a configured model"),
        (lambda d: d["governor"].update(kind="redis"), "governor.redis_url: required"),
        (lambda d: d["models"][SLOW].update(tpm=2**60), f"models.{SLOW}.tpm: must be at most 9007199254740992"),
        (lambda d: d["models"][SLOW].update(max_concurrency=2**32), f"models.{SLOW}.max_concurrency: must be at most"),
        (lambda d: d["server"].update(interactive_max_queue_wait_s=0), "server.interactive_max_queue_wait_s: must be"),
        (lambda d: d["governor"].update(stale_after_s=0.15), "governor.stale_after_s: must be at least twice"),
        (lambda d: d["governor"].update(forget_after_s=0.5), "governor.forget_after_s: must be more than"),
    ],
)
def test_bad_config_names_the_field(mutate: Any, message: str) -> None:
    data = shipped()
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={})
    assert message in str(info.value)


def test_yaml_file_and_environment_overrides(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(shipped()))
    env = {
        "TRANSLANE_GRPC_PORT": "6000",
        "TRANSLANE_UPSTREAM_URL": "http://127.0.0.1:9/v1/",
        "TRANSLANE_DEFAULT_MODEL": "deepseek-v3-2-251201",
        "TRANSLANE_GOVERNOR": "redis",
        "TRANSLANE_REDIS_URL": "redis://127.0.0.1:1/0",
        "TRANSLANE_REPLICAS": "3",
    }
    cfg = load_config(path, env=env)
    assert cfg.server.port == 6000
    assert cfg.providers["ark"].base_url == "http://127.0.0.1:9/v1"
    assert cfg.default_model == "deepseek-v3-2-251201"
    assert (cfg.governor.kind, cfg.governor.replicas) == ("redis", 3)


def test_the_command_fails_at_start_with_the_field(tmp_path: Path) -> None:
    data = shipped()
    data["models"][SLOW]["tpm"] = 0
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.run(
        [sys.executable, "-m", "translane.cli", "--models-file", str(path), "serve", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"models.{SLOW}.tpm: must be > 0, got 0" in proc.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "translane.cli", "--models-file", str(tmp_path / "nope.toml"), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr


# -- each setting declared once ---------------------------------------------------------------------


def tables(cls: type, path: tuple[str, ...] = ()) -> Iterator[tuple[type, tuple[str, ...]]]:
    """Every settings dataclass under `cls` and where its table sits in the shipped file."""
    yield cls, path
    data = shipped()
    for f in dataclasses.fields(cls):
        kind, args = get_type_hints(cls)[f.name], get_args(get_type_hints(cls)[f.name])
        if dataclasses.is_dataclass(kind):
            yield from tables(kind, (*path, f.name))
        elif get_origin(kind) is Mapping and dataclasses.is_dataclass(args[1]):
            first = next(iter(data[f.name]))
            yield from tables(args[1], (*path, f.name, first))


def table_at(data: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for key in path:
        data = data.setdefault(key, {})
    return data


FIELDS = [(cls, path, f) for cls, path in tables(Config) for f in dataclasses.fields(cls)]


@pytest.mark.parametrize(("cls", "path", "f"), FIELDS, ids=[".".join((*p, f.name)) for _, p, f in FIELDS])
def test_every_field_is_read_from_the_file_or_says_where_it_comes_from(
    cls: type, path: tuple[str, ...], f: dataclasses.Field[Any]
) -> None:
    """A field added to a config object is read from the file at its place (or declares its source)."""
    where = ".".join((*path, f.name))
    wrong = shipped()
    table_at(wrong, path)[f.name] = [[]]
    with pytest.raises(ConfigError) as info:
        parse_config(wrong, env={})
    if declaration(f).derived:
        assert str(info.value) == f"{where}: unknown field"
        return
    # A value of the wrong type is refused naming this field: the file's key reaches it.
    assert str(info.value).startswith(f"{where}: expected")
    # Its declared default passes its own checks (a required field is in the shipped file).
    data = shipped()
    table = table_at(data, path)
    if f.name not in table and f.default is not dataclasses.MISSING:
        table[f.name] = list(f.default) if isinstance(f.default, tuple) else f.default
    parse_config(data, env={"ARK_API_KEY": "k"})


def env_fields() -> Iterator[tuple[type, tuple[str, ...], dataclasses.Field[Any]]]:
    return ((cls, path, f) for cls, path, f in FIELDS if declaration(f).env)


def sample(kind: Any) -> tuple[str, Any]:
    """A value of `kind` as the environment gives it, and as it is read."""
    if get_origin(kind) is Literal:
        return get_args(kind)[-1], get_args(kind)[-1]
    return {int: ("7", 7), float: ("1.5", 1.5), bool: ("yes", True), str: ("v", "v")}[kind]


def test_every_declared_variable_is_read_by_the_one_rule() -> None:
    declared = {declaration(f).env for _, _, f in env_fields()}
    assert {"TRANSLANE_GRPC_PORT", "TRANSLANE_GRPC_INSECURE", "TRANSLANE_REPLICAS", "TRANSLANE_CACHE"} <= declared
    for cls, path, f in env_fields():
        var, kind = declaration(f).env, get_type_hints(cls)[f.name]
        raw, value = sample(kind)
        assert read(cls, None, ".".join(path), {var: raw})[f.name] == value, var
        # Blank is not given: the file's value (here the default) holds.
        assert f.name not in read(cls, None, ".".join(path), {var: " "}) or kind is bool, var
        if kind is not str:
            with pytest.raises(ConfigError, match=f"^{var}: "):
                read(cls, None, ".".join(path), {var: "maybe"})


@pytest.mark.parametrize("word", ["1", "true", "YES", " on ", "0", "false", "No", "off", ""])
def test_one_boolean_rule(word: str) -> None:
    cfg = load_config(env={"TRANSLANE_GRPC_INSECURE": word})
    assert cfg.server.allow_insecure is (word.strip().lower() in ("1", "true", "yes", "on"))
    assert settings.flag({"V": word}, "V") is cfg.server.allow_insecure


def test_a_flag_that_is_neither_names_the_variable_and_quotes_a_bounded_prefix() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"TRANSLANE_GRPC_INSECURE": "maybe"})
    assert str(info.value) == "TRANSLANE_GRPC_INSECURE: expected 1/0, true/false, yes/no or on/off, got 'maybe'"
    with pytest.raises(ConfigError) as info:
        load_config(env={"TRANSLANE_GRPC_INSECURE": "x" * 10_000})
    assert len(str(info.value)) < 120


def test_an_environment_variable_declared_on_a_field_overrides_the_file() -> None:
    data = shipped()
    data["server"]["metrics_port"] = 5
    assert parse_config(data, env={}).server.metrics_port == 5
    assert parse_config(data, env={"TRANSLANE_METRICS_PORT": "9"}).server.metrics_port == 9
    assert parse_config(data, env={"TRANSLANE_METRICS_PORT": "  "}).server.metrics_port == 5
    # The field's one check applies to both, naming where the value came from.
    with pytest.raises(ConfigError, match=r"^TRANSLANE_METRICS_PORT: must be within 0\.\.65535, got -1$"):
        parse_config(data, env={"TRANSLANE_METRICS_PORT": "-1"})
    with pytest.raises(ConfigError, match=r"^TRANSLANE_METRICS_PORT: expected an integer, got 'nine'$"):
        parse_config(data, env={"TRANSLANE_METRICS_PORT": "nine"})
    data["server"]["port"] = -1
    with pytest.raises(ConfigError, match=r"^server\.port: must be within 0\.\.65535, got -1$"):
        parse_config(data, env={})


@pytest.mark.parametrize(
    "path", [(), ("server",), ("governor",), ("cache",), ("providers", "ark"), ("lanes", "fast"), ("models", SLOW)]
)
def test_an_unknown_field_is_named_in_every_table(path: tuple[str, ...]) -> None:
    data = shipped()
    table_at(data, path)["colour"] = "blue"
    with pytest.raises(ConfigError) as info:
        parse_config(data, env={})
    assert str(info.value) == ".".join((*path, "colour")) + ": unknown field"


@dataclasses.dataclass(frozen=True)
class Knobs:
    port: int = setting(5, check=non_negative, env="KNOB_PORT")
    on: bool = setting(False, env="KNOB_ON")
    names: tuple[str, ...] = setting(("a",), env="KNOB_NAMES")


def test_the_builder_takes_the_argument_then_the_variable_then_the_table_then_the_default() -> None:
    assert build(Knobs) == Knobs()
    assert build(Knobs, {"port": 6}).port == 6
    assert build(Knobs, {"port": 6}, env={"KNOB_PORT": "7"}).port == 7
    assert build(Knobs, {"port": 6}, env={"KNOB_PORT": "7"}, port=8).port == 8
    assert build(Knobs, env={"KNOB_ON": "on", "KNOB_NAMES": " x, ,y "}) == Knobs(on=True, names=("x", "y"))
    with pytest.raises(ConfigError, match=r"^knobs\.port: expected int, got str 'six'$"):
        build(Knobs, {"port": "six"}, "knobs")
    with pytest.raises(ConfigError, match=r"^knobs\.colour: unknown field$"):
        build(Knobs, {"colour": 1}, "knobs")


def test_the_grpc_target_is_declared_once() -> None:
    assert settings.DEFAULT_GRPC_TARGET == f"127.0.0.1:{settings.DEFAULT_GRPC_PORT}" == "127.0.0.1:50051"
    assert settings.grpc_target({}) == settings.grpc_target({"TRANSLANE_GRPC_TARGET": " "}) == "127.0.0.1:50051"
    assert settings.grpc_target({"TRANSLANE_GRPC_TARGET": "svc:1"}) == "svc:1"
    assert load_config(env={}).server.port == settings.DEFAULT_GRPC_PORT


def test_every_declared_variable_is_in_the_readme() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert {declaration(f).env for _, _, f in env_fields()} <= set(re.findall(r"TRANSLANE_[A-Z_]+", readme))


def test_parsing_leaves_the_input_alone() -> None:
    data = shipped()
    before = copy.deepcopy(data)
    parse_config(data, env={})
    assert data == before


@pytest.mark.parametrize("key", ["port", "metrics_port", "health_port"])
def test_a_port_past_65535_is_refused_not_wrapped(key: str) -> None:
    data = tomllib.loads(default_models_text())
    data.setdefault("server", {})[key] = 70000
    with pytest.raises(ConfigError, match=rf"^server\.{key}: must be within 0\.\.65535, got 70000"):
        parse_config(data, env={})


def test_a_client_command_does_not_read_the_servers_port_variables() -> None:
    """`translane models` with a broken TRANSLANE_GRPC_PORT still runs (and here fails to connect, in one line)."""
    env = {"PATH": "", "TRANSLANE_GRPC_PORT": "abc", "TRANSLANE_SIM_PORT": "x", "TRANSLANE_GRPC_TARGET": "127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "translane.cli", "models"], capture_output=True, text=True, env=env, timeout=60
    )
    assert "bad configuration" not in done.stderr and "TRANSLANE_GRPC_PORT" not in done.stderr
    assert done.returncode == 1 and "127.0.0.1:1" in done.stderr
    served = subprocess.run(
        [sys.executable, "-m", "translane.cli", "serve"], capture_output=True, text=True, env=env, timeout=60
    )
    assert served.returncode == 2 and "TRANSLANE_GRPC_PORT: expected an integer" in served.stderr


def test_serve_without_the_providers_key_says_so_at_start(tmp_path: Path) -> None:
    """Not at the first request: the line names the variable and the way to the simulated provider."""
    from ..helpers.processes import clean_env, free_port, translane

    port = free_port()
    with translane(["serve", "--port", str(port)], port, tmp_path / "serve.log", clean_env()):
        pass
    log = (tmp_path / "serve.log").read_text()
    assert "has no key: $ARK_API_KEY is not set" in log and "--upstream-url" in log
    port = free_port()
    upstream = ["--upstream-url", "http://127.0.0.1:1/api/v3"]
    with translane(["serve", "--port", str(port), *upstream], port, tmp_path / "sim.log", clean_env()):
        pass
    assert "has no key" not in (tmp_path / "sim.log").read_text()
