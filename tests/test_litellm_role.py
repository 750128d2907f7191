"""The litellm role's input checks and what it renders, without a lab: each bad input is
one sentence naming the entry, before anything changes; the keys file holds only hashes."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys

import pytest

from tests.conftest import REPO

_path = REPO / "roles" / "litellm" / "filter_plugins" / "litellm.py"
_spec = importlib.util.spec_from_file_location("litellm_filters", _path)
filters = importlib.util.module_from_spec(_spec)
sys.modules["litellm_filters"] = filters
_spec.loader.exec_module(filters)

SERVERS = ["http://10.0.4.10:8000"]
MODELS = [{"name": "chat", "model": "smollm2-135m", "api_base": "http://10.0.4.10:8000/v1"},
          {"name": "autocomplete", "model": "smollm2-135m",
           "api_base": "http://10.0.4.10:8000/v1"}]
LIMITS = {"rpm": 60, "tpm": 60000, "daily_tokens": 100000, "parallel": 4}
USERS = [{"name": "alice", "key": "k" * 40}, {"name": "bob", "key": "b" * 40, "rpm": 5}]


def problems(models=MODELS, users=USERS, limits=LIMITS, dlp=None, servers=SERVERS):
    return filters.litellm_problems(models, users, limits, dlp or {}, servers)


def test_good_input_has_no_problems() -> None:
    assert problems() == []


@pytest.mark.parametrize("change, says", [
    ({"models": [{**MODELS[0], "api_base": "http://10.0.4.99:8000/v1"}]},
     "litellm_models[0] (chat) is routed to http://10.0.4.99:8000, which is no inference "
     "server of this site (they are: http://10.0.4.10:8000)"),
    ({"models": [{**MODELS[0], "api_base": "http://10.0.4.10:8000"}]},
     "must be an inference server's OpenAI API, http(s)://HOST:PORT/v1"),
    ({"models": [MODELS[0], MODELS[0]]}, "litellm_models[1] (chat): a second model"),
    ({"models": [{**MODELS[0], "model": "meta-llama-3-8b"}]}, "fetch a tokenizer"),
    ({"models": [{**MODELS[0], "input_cost_per_token": "cheap"}]},
     "input_cost_per_token must be a number of at least 0, got 'cheap'"),
    ({"models": []}, "litellm_models is empty"),
    ({"limits": {**LIMITS, "rpm": "60"}},
     "litellm_default_limits.rpm must be a whole number above 0, got '60'"),
    ({"limits": {**LIMITS, "daily_tokens": 0}}, "daily_tokens must be a whole number above 0"),
    ({"limits": {**LIMITS, "parallel": True}}, "parallel must be a whole number above 0"),
    ({"users": [{"name": "alice", "key": "k" * 40, "tpm": 1.5}]},
     "litellm_users[0] (alice).tpm must be a whole number above 0, got 1.5"),
    ({"users": [{"name": "alice", "key": "short"}]}, "key must be a secret of at least 32"),
    ({"users": [USERS[0], USERS[0]]}, "litellm_users[1] (alice): listed twice"),
    ({"users": [{"name": "Robert'); DROP", "key": "k" * 40}]}, "is not a user name"),
    ({"dlp": {"rules": [{"name": "code", "pattern": "Falcon-(", "action": "block"}]}},
     "(code): pattern does not compile"),
    ({"dlp": {"actions": {"private_key": "ignore"}}}, "action 'ignore' must be one of"),
    ({"dlp": {"disable": ["cards"]}}, "'cards' is not a built-in rule"),
])
def test_bad_input_is_one_sentence_naming_the_entry(change: dict, says: str) -> None:
    got = problems(**change)
    assert any(says in p for p in got), got


def test_the_keys_file_holds_hashes_and_limits_never_a_key() -> None:
    keys = filters.litellm_keys(USERS, LIMITS)
    text = json.dumps(keys)
    assert "k" * 40 not in text and "b" * 40 not in text
    assert keys["users"]["alice"] == {"sha256": hashlib.sha256(b"k" * 40).hexdigest(), **LIMITS}
    assert keys["users"]["bob"]["rpm"] == 5 and keys["users"]["bob"]["tpm"] == 60000


def test_the_config_routes_each_model_and_loads_airlocks_hooks() -> None:
    cfg = filters.litellm_config([{**MODELS[0], "input_cost_per_token": 1e-7}, MODELS[1]])
    assert [m["model_name"] for m in cfg["model_list"]] == ["chat", "autocomplete"]
    assert cfg["model_list"][0]["litellm_params"] == {
        "model": "openai/smollm2-135m", "api_base": "http://10.0.4.10:8000/v1",
        "api_key": "none", "input_cost_per_token": 1e-7}
    assert cfg["general_settings"]["custom_auth"] == "airlock_litellm.authenticate"
    assert cfg["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert cfg["guardrails"][0]["litellm_params"]["default_on"] is True
    assert "database_url" not in json.dumps(cfg).lower()


ENGINES = {n: {"url": f"https://repo1/files/prisma/{n}", "sha256": "c" * 64}
           for n in ("query_engine", "schema_engine")}


def test_numbers_from_the_inventory_are_numbers() -> None:
    """Ansible 2.19 hands inventory integers over as int subclasses (tagged): they are
    whole numbers (the lab's deploy found the check refusing them)."""
    class Tagged(int):
        pass

    assert problems(limits={k: Tagged(v) for k, v in LIMITS.items()}) == []


def test_no_database_is_the_default_and_says_so_to_litellm() -> None:
    assert filters.litellm_database_problems("", {}) == []
    env = filters.litellm_env("sk-" + "m" * 40, "", "/opt/airlock/litellm/prisma")
    assert env.splitlines() == ["LITELLM_MASTER_KEY=sk-" + "m" * 40,
                                "DISABLE_SCHEMA_UPDATE=True"]


def test_the_database_path_points_prisma_at_the_carried_engines() -> None:
    url = "postgresql://litellm:pw@127.0.0.1:5432/litellm"
    assert filters.litellm_database_problems(url, ENGINES) == []
    env = dict(line.split("=", 1) for line in filters.litellm_env(
        "sk-x", url, "/opt/airlock/litellm/prisma").splitlines())
    assert env["DATABASE_URL"] == url
    assert env["PRISMA_QUERY_ENGINE_LIBRARY"] == \
        "/opt/airlock/litellm/prisma/libquery_engine.so.node"
    assert env["PRISMA_SCHEMA_ENGINE_BINARY"] == "/opt/airlock/litellm/prisma/schema-engine"


@pytest.mark.parametrize("url, engines, words", [
    ("postgresql://db/litellm", {}, "binaries.prisma.sh"),
    ("mysql://db/litellm", ENGINES, "postgresql:// URL"),
    ("postgresql://db/litellm", {**ENGINES, "schema_engine": {"url": "http://x/e",
                                                              "sha256": "c" * 64}},
     "schema_engine needs url (https://"),
    ("postgresql://db/litellm", {**ENGINES, "query_engine": {"url": "https://x/e",
                                                             "sha256": "short"}},
     "query_engine needs url"),
])
def test_a_database_without_prismas_engines_is_refused(url, engines, words) -> None:
    assert any(words in p for p in filters.litellm_database_problems(url, engines))


def test_one_instance_counts_alone_more_need_a_shared_redis() -> None:
    assert filters.litellm_instance_problems(1, 1, {}) == []
    for hosts, workers in ((2, 1), (1, 4)):
        said = filters.litellm_instance_problems(hosts, workers, {})
        assert said and "would each count the users' limits" in said[0], said
    assert filters.litellm_instance_problems(2, 2, {"host": "llm1", "port": 6379}) == []
    assert "needs host and port" in filters.litellm_instance_problems(
        2, 1, {"host": "llm1", "port": "6379"})[0]
    assert "litellm_workers" in filters.litellm_instance_problems(1, 0, {})[0]


def test_a_shared_redis_is_in_the_config_and_fails_closed() -> None:
    cfg = filters.litellm_config(MODELS, {"host": "llm1", "port": 6379, "password": "pw"})
    g = cfg["general_settings"]
    assert g["coordination_redis"] == {"host": "llm1", "port": 6379,
                                       "password": "os.environ/AIRLOCK_REDIS_PASSWORD"}
    assert g["fail_closed_rate_limit_enforcement"] is True
    assert "pw" not in json.dumps(cfg)  # the password only in the 0600 environment file
    assert "AIRLOCK_REDIS_PASSWORD=pw" in filters.litellm_env("sk-x", "", "/p", "pw")
    assert "coordination_redis" not in filters.litellm_config(MODELS)["general_settings"]
