"""Identity on a real mosquitto set up as docs/security.md says: passwords or TLS client certificates, and the ACL.

The attack: an agent that knows a victim's request ids (here leaked to it by the
test) forges replies on the victim's reply topic, asks a hub to answer on the
victim's topic, and publishes requests on the victim's topic. With the ACL and
two hubs, none of it reaches the victim, whose results stay its own; on an
open broker (the control) the forged reply does reach the victim's topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pytest

from cloud_hub import Hub, HubConfig, LocalBroker, free_port, mosquitto_acl
from edge_agent import EdgeAgent, FetchSettings, Timeouts, fetch_model
from edge_agent._outbox import Outbox
from edgecut._cli import main
from edgecut._exit import ExitCode
from models import SegmentsManifest, file_sha256_hex, partition
from protocol import (
    InferenceReply,
    NodeStatus,
    Ping,
    Topics,
    encode_ping,
    encode_reply,
    encode_request,
    encode_status,
)
from protocol.errors import TransportError
from protocol.mqtt import Connection
from tests._support import random_images, tiny_logits, tiny_request, until, watching

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    import trustme

pytestmark = pytest.mark.broker

# The ACL and TLS set-up is mosquitto's: the embedded broker has neither.
needs_mosquitto = pytest.mark.skipif(
    shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None,
    reason="needs mosquitto (and mosquitto_passwd)",
)

USERS = ("victim", "attacker", "hub0", "hub1")
HUBS = ("hub0", "hub1")
_CUT = "stem.out"  # the cut the agents here send, whose tail the hubs preload


@dataclasses.dataclass(frozen=True)
class Deployment:
    """A secured broker and how each user reaches it."""

    broker: LocalBroker
    prefix: str
    urls: dict[str, str]


def _password_setup(tmp_path: Path, port: int) -> tuple[str, dict[str, str]]:
    passwords = tmp_path / "passwords"
    for index, user in enumerate(USERS):
        create = ["-c"] if index == 0 else []
        subprocess.run(["mosquitto_passwd", "-b", *create, str(passwords), user, f"{user}-pw"], check=True)  # noqa: S603, S607
    urls = {user: f"mqtt://{user}:{user}-pw@127.0.0.1:{port}" for user in USERS}
    return f"password_file {passwords}\n", urls


def _certificate_setup(tmp_path: Path, port: int) -> tuple[str, dict[str, str]]:
    import trustme  # noqa: PLC0415 - a dev dependency

    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    urls = {}
    for user in USERS:
        _issue(ca, user, tmp_path)
        urls[user] = f"mqtts://127.0.0.1:{port}?ca={ca_file}&cert={tmp_path / user}.pem&key={tmp_path / user}.key"
    settings = (
        f"cafile {ca_file}\ncertfile {tmp_path / 'server.pem'}\nkeyfile {tmp_path / 'server.key'}\n"
        "require_certificate true\nuse_identity_as_username true\n"
    )
    return settings, urls


def _issue(ca: trustme.CA, user: str, directory: Path) -> None:
    """A client certificate whose CN is ``user``: with use_identity_as_username, its user name."""
    leaf = ca.issue_cert(f"{user}.example", common_name=user)
    leaf.cert_chain_pems[0].write_to_path(str(directory / f"{user}.pem"))
    leaf.private_key_pem.write_to_path(str(directory / f"{user}.key"))


@contextlib.contextmanager
def _deploy(mode: str, directory: Path, prefix: str) -> Iterator[Deployment]:
    """mosquitto with authentication (by password or client certificate) and the ACL of ``edgecut acl``."""
    port = free_port()
    auth, urls = (_password_setup if mode == "password" else _certificate_setup)(directory, port)
    acl = directory / "acl"
    acl.write_text(mosquitto_acl(prefix, HUBS))
    extra = f"allow_anonymous false\nacl_file {acl}\n{auth}"
    with LocalBroker(kind="mosquitto", port=port, extra_config=extra) as broker:
        yield Deployment(broker=broker, prefix=prefix, urls=urls)


@pytest.fixture(params=["password", "certificate"])
def secured(request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> Iterator[Deployment]:
    with _deploy(request.param, tmp_path, prefix) as deployment:
        yield deployment


@contextlib.asynccontextmanager
async def _hubs(urls: dict[str, str], prefix: str) -> AsyncIterator[list[Hub]]:
    preload = (f"tiny:{_CUT}",)  # the first request is answered, not told the tail is loading, however busy the host
    hubs = [Hub(HubConfig(broker=urls[name], prefix=prefix, hub_id=name, threads=1, preload=preload)) for name in HUBS]
    tasks = [asyncio.create_task(hub.serve()) for hub in hubs]
    try:
        await asyncio.wait_for(asyncio.gather(*(hub.ready.wait() for hub in hubs)), 30)
        yield hubs
    finally:
        for hub in hubs:
            hub.request_shutdown()
        await asyncio.gather(*tasks)


def _forged_reply(request_id: str) -> bytes:
    """A well-formed reply with the shape the victim expects: only the broker can stop it."""
    reply = InferenceReply(
        request_id=request_id,
        hub_id="hub0",
        outputs={"logits": np.full((4, 10), 666.0, np.float32)},
        error=None,
        queue_ms=0.0,
        compute_ms=0.0,
        queue_depth=0,
    )
    return encode_reply(reply)


async def _attack(attacker: Connection, topics: Topics, request_id: str) -> None:
    """Use a victim's request id (as if leaked) in every way the protocol might allow."""
    correlation = request_id.encode()
    reply_to = topics.response("victim")
    # 1. a forged reply straight onto the victim's reply topic
    await attacker.publish(reply_to, _forged_reply(request_id), qos=1, correlation=correlation)
    # 2. its own request, asking the hub to answer on the victim's topic with the victim's correlation
    own = encode_request(tiny_request(agent_id="attacker", request_id=request_id))
    await attacker.publish(topics.request("attacker"), own, qos=1, response_topic=reply_to, correlation=correlation)
    # 3. a request in the victim's name, on the victim's topic
    posing = encode_request(tiny_request(agent_id="victim", request_id=request_id))
    await attacker.publish(topics.request("victim"), posing, qos=1, response_topic=reply_to, correlation=correlation)


@needs_mosquitto
async def test_the_spoofing_attack_fails_with_the_acl(secured: Deployment) -> None:
    topics = Topics(secured.prefix)
    batches = [np.stack(random_images(4, seed=seed)) for seed in range(6)]
    seen_by_attacker: asyncio.Queue[str] = asyncio.Queue()
    attacker = Connection(
        secured.urls["attacker"],
        client_id="attacker",
        subscriptions=[(topics.all_requests(), 1), (topics.all_responses(), 1)],  # the ACL lets only its own through
        on_message=lambda incoming: seen_by_attacker.put_nowait(incoming.topic),
    )
    victim = EdgeAgent(
        secured.urls["victim"],
        agent_id="victim",  # the user name: the ACL lets it publish on this agent's topic only
        model="tiny",
        cut=_CUT,
        prefix=secured.prefix,
        fallback=False,
        threads=1,
        timeouts=Timeouts(request=10),
    )
    attacked: list[str] = []
    publish = victim._outbox._publish

    async def attacked_first(request_id: str, *args: Any, **kwargs: Any) -> None:  # noqa: ANN401
        """The attack goes out before each request, so the forgery is on the wire before any real reply."""
        await _attack(attacker, topics, request_id)
        attacked.append(request_id)
        await publish(request_id, *args, **kwargs)

    victim._outbox._publish = attacked_first  # type: ignore[method-assign]
    async with _hubs(secured.urls, secured.prefix), attacker, victim:
        await attacker.wait_connected(10)
        results = [await victim.infer(batch) for batch in batches]
        # One answer per attacked id: an id attacked again (the victim published again) while the attacker's first
        # request with it was still queued is a repeat the hub drops, as it does every repeat of a queued request.
        await until(
            lambda: seen_by_attacker.qsize() >= len(set(attacked)), "the answers to the attacker's own requests"
        )
    # Each request was attacked before it went out (again, if a slow machine made the agent publish it again).
    assert list(dict.fromkeys(attacked)) == [result.request_id for result in results]
    for result, batch in zip(results, batches, strict=True):
        assert (result.fallback, result.hub_id in HUBS) == (None, True)
        assert result.outputs["logits"].shape == (4, 10)
        for image, logits in zip(batch, result.outputs["logits"], strict=True):
            np.testing.assert_allclose(logits, tiny_logits(image)[0], atol=1e-4)
    seen = [seen_by_attacker.get_nowait() for _ in range(seen_by_attacker.qsize())]
    assert set(seen) == {topics.response("attacker")}  # only the answers to its own requests
    # At most one per attack: the requests on the victim's topic were refused by the broker.
    assert len(set(attacked)) <= len(seen) <= len(attacked)


@needs_mosquitto
async def test_tls_refuses_a_client_without_a_certificate_of_the_ca(tmp_path: Path, prefix: str) -> None:
    import trustme  # noqa: PLC0415 - a dev dependency

    stranger = tmp_path / "stranger"
    stranger.mkdir()
    _issue(trustme.CA(), "victim", stranger)
    with _deploy("certificate", tmp_path, prefix) as deployment:
        port, ca = deployment.broker.port, tmp_path / "ca.pem"
        refused = {
            "no client certificate": f"mqtts://127.0.0.1:{port}?ca={ca}",
            "a certificate of another CA": f"mqtts://127.0.0.1:{port}?ca={ca}&cert={stranger}/victim.pem"
            f"&key={stranger}/victim.key",
            "plain MQTT on the TLS port": f"mqtt://127.0.0.1:{port}",
        }
        for what, url in refused.items():
            connection = Connection(url, client_id="victim")
            async with connection:
                with pytest.raises(TransportError, match="no connection to the broker"):
                    await connection.wait_connected(2)
            assert connection.connects == 0, what
        async with watching(deployment.urls["victim"], Topics(prefix).response("victim")) as watcher:
            assert watcher.connection.is_connected


async def test_on_an_open_broker_the_forged_reply_does_reach_the_victim(broker_url: str, prefix: str) -> None:
    """The control: without the ACL, nothing but the broker stands between the attacker and the victim's topic."""
    topics = Topics(prefix)
    async with (
        watching(broker_url, topics.response("victim")) as victim_topic,
        watching(broker_url) as attacker,
    ):
        await attacker.publish(topics.response("victim"), _forged_reply("leaked-id"), correlation=b"leaked-id")
        arrived = await victim_topic.next()
    assert arrived.correlation == b"leaked-id"


def _forged_status(node: str) -> bytes:
    """A hub's last will, as the attacker would write it: it makes agents publish their requests again."""
    return encode_status(NodeStatus(node_id=node, role="hub", state="offline", sent_at=time.time()))


@contextlib.asynccontextmanager
async def _forging(attacker: Connection, topics: Topics) -> AsyncIterator[None]:
    """Publish forged hub statuses every 20 ms, on every status topic the attacker might try, while in the block."""
    forgeries = [
        (topics.status(topic_node), _forged_status(node)) for topic_node in (*HUBS, "attacker") for node in HUBS
    ]

    stop, first_round = asyncio.Event(), asyncio.Event()

    async def forge() -> None:
        # Stopped by an event, not a cancel: on Python 3.11 a cancel landing inside aiomqtt's
        # publish can be swallowed (CPython gh-86296), and the loop would never end.
        while not stop.is_set():
            for topic, payload in forgeries:
                with contextlib.suppress(TransportError):
                    await attacker.publish(topic, payload, qos=0, retain=True, timeout=1)
            first_round.set()
            await asyncio.sleep(0.02)

    task = asyncio.create_task(forge())
    try:
        await asyncio.wait_for(first_round.wait(), 30)  # forgeries are out (and retained, where allowed)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@needs_mosquitto
async def test_forged_hub_statuses_change_nothing_with_the_acl(secured: Deployment) -> None:
    """Under the ACL only a hub publishes on its own status topic: the victim never hears a forged last will."""
    topics = Topics(secured.prefix)
    attacker = Connection(secured.urls["attacker"], client_id="attacker")
    victim = EdgeAgent(
        secured.urls["victim"],
        agent_id="victim",
        model="tiny",
        cut=_CUT,
        prefix=secured.prefix,
        fallback=False,
        threads=1,
        timeouts=Timeouts(request=10, retry=None),
    )
    images = random_images(20, seed=3)
    async with _hubs(secured.urls, secured.prefix) as hubs, attacker, victim:
        await attacker.wait_connected(10)
        async with _forging(attacker, topics):
            results = [await victim.infer(image) for image in images]
    assert all(result.hub_id in HUBS for result in results)
    # Each forged "offline" heard would have made the victim publish its request again, and a hub run it twice.
    assert victim._outbox.publishes == len(images)
    assert sum(hub.tails_run for hub in hubs) == len(images)


@needs_mosquitto
async def test_under_the_acl_an_agent_pings_as_itself_only(secured: Deployment) -> None:
    topics = Topics(secured.prefix)
    victim = Connection(secured.urls["victim"], client_id="victim", subscriptions=[(topics.response("victim"), 0)])
    attacker = Connection(secured.urls["attacker"], client_id="attacker")
    answers: asyncio.Queue[str] = asyncio.Queue()
    outbox = Outbox(
        victim,
        request_topic=topics.request("victim"),
        ping_topic=topics.ping("victim"),
        response_topic=topics.response("victim"),
        qos=1,
        retry_s=None,
    )
    victim._on_message = lambda incoming: (outbox.on_reply(incoming), answers.put_nowait(incoming.topic))  # type: ignore[assignment]
    async with _hubs(secured.urls, secured.prefix), victim, attacker:
        await victim.wait_connected(10)
        await attacker.wait_connected(10)
        own = await outbox.probe("own", encode_ping(Ping("own", time.time())), 10)
        forged = encode_ping(Ping("forged", time.time()))
        await attacker.publish(topics.ping("victim"), forged, qos=0, correlation=b"forged", timeout=5)
        await outbox.probe("after", encode_ping(Ping("after", time.time())), 10)
    assert own is not None  # the hub read the agent's ping and answered on its reply topic
    assert answers.qsize() == 2  # its own two; the forged one on its ping topic was refused by the broker


@needs_mosquitto
async def test_under_the_acl_an_agent_fetches_a_model_and_only_it_sees_its_blocks(
    secured: Deployment, tmp_path: Path
) -> None:
    model_id, model = partition.load_model("tiny")
    cuts = partition.candidate_cuts(partition.enumerate_cuts(model))
    partition.save_segments(partition.split_segments(model, cuts, model_id=model_id), tmp_path / "models" / "tiny")
    topics = Topics(secured.prefix)
    seen_by_attacker: list[str] = []
    attacker = Connection(
        secured.urls["attacker"],
        client_id="attacker",
        subscriptions=[(topics.all_blocks(), 1), (topics.all_fetches("hub0"), 1)],  # the ACL lets none through
        on_message=lambda incoming: seen_by_attacker.append(incoming.topic),
    )
    hub = Hub(
        HubConfig(broker=secured.urls["hub0"], prefix=secured.prefix, hub_id="hub0", models_dir=tmp_path / "models")
    )
    serving = asyncio.create_task(hub.serve())
    try:
        await asyncio.wait_for(hub.ready.wait(), 30)
        async with attacker:
            await attacker.wait_connected(10)
            path = await fetch_model(
                secured.urls["victim"],
                "tiny",
                cache=tmp_path / "cache",
                prefix=secured.prefix,
                agent_id="victim",
                settings=FetchSettings(blocks_per_fetch=1, fetches_in_flight=1),
            )
    finally:
        hub.request_shutdown()
        await serving
    chain = SegmentsManifest.load(path)
    assert all(file_sha256_hex(path / segment.file) == segment.sha256 for segment in chain.segments)
    assert seen_by_attacker == []


async def test_a_status_that_does_not_name_its_topics_hub_is_ignored(
    broker_url: str, prefix: str, start_hub: Callable[..., Awaitable[Hub]], caplog: pytest.LogCaptureFixture
) -> None:
    """On an open broker too: a status counts only on the topic of the hub it names, and only if it says 'hub'."""
    await start_hub(hub_id="hub0")
    topics = Topics(prefix)
    caplog.set_level(logging.WARNING, logger="edgecut.agent")
    images = random_images(20, seed=4)
    async with (
        watching(broker_url) as attacker,
        EdgeAgent(
            broker_url,
            model="tiny",
            cut=_CUT,
            prefix=prefix,
            fallback=False,
            threads=1,
            timeouts=Timeouts(request=10, retry=None),
        ) as victim,
    ):
        forged = attacker.connection.publish
        await forged(topics.status("attacker"), _forged_status("hub0"), qos=1, retain=True, timeout=10)
        agent_status = NodeStatus(node_id="hub1", role="agent", state="offline", sent_at=time.time())
        await forged(topics.status("hub1"), encode_status(agent_status), qos=1, retain=True, timeout=10)
        for _ in range(3):  # logged once per topic, however often it comes
            await attacker.publish(topics.status("attacker"), _forged_status("hub0"))
        await until(lambda: caplog.text.count("ignored a status") >= 2, "the forgeries to arrive")
        results = [await victim.infer(image) for image in images]
    assert all(result.hub_id == "hub0" for result in results)
    assert victim._outbox.publishes == len(images)
    assert caplog.text.count(f"ignored a status on {topics.status('attacker')}") == 1
    assert "names hub 'hub0', not hub 'attacker' of its topic" in caplog.text
    assert "names agent 'hub1', not hub 'hub1' of its topic" in caplog.text


EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def test_the_example_acl_is_what_edgecut_acl_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acl", "--hub", "hub-a", "--hub", "hub-b"]) == ExitCode.OK
    assert capsys.readouterr().out == (EXAMPLES / "edgecut.acl").read_text()


@pytest.mark.parametrize(("argv", "fragment"), [([], "name at least one hub"), (["--prefix", "a/#"], "'a/#'")])
def test_acl_refuses_what_would_not_work(capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    assert main(["acl", "--hub", "hub-a", *argv] if argv else ["acl"]) == ExitCode.CONFIG
    assert fragment in capsys.readouterr().err


def _mosquitto(conf: str, directory: Path) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    (directory / "mosquitto.conf").write_text(conf + ("user root\n" if os.geteuid() == 0 else ""))
    log = (directory / "mosquitto.log").open("wb")
    return subprocess.Popen(["mosquitto", "-c", str(directory / "mosquitto.conf")], stderr=log), log  # noqa: S603, S607


@needs_mosquitto
async def test_the_example_mosquitto_conf_serves_a_deployment(tmp_path: Path, prefix: str) -> None:
    """docs/examples/mosquitto.conf, with its paths pointed at this test's files, carries an inference."""
    port = free_port()
    _, urls = _certificate_setup(tmp_path, port)
    (tmp_path / "acl").write_text(mosquitto_acl(prefix, HUBS))
    conf = (EXAMPLES / "mosquitto.conf").read_text().replace("/etc/mosquitto/edgecut/", f"{tmp_path}/")
    conf = conf.replace("listener 8883", f"listener {port} 127.0.0.1").replace("/broker.", "/server.")
    broker, log = _mosquitto(conf, tmp_path)
    try:
        async with (
            _hubs(urls, prefix),
            EdgeAgent(urls["victim"], agent_id="victim", model="tiny", cut=_CUT, prefix=prefix) as agent,
        ):
            image = random_images(1, seed=11)[0]
            result = await agent.infer(image)
    finally:
        broker.terminate()
        broker.wait(10)
        log.close()
    assert (result.fallback, result.hub_id in HUBS) == (None, True)
    np.testing.assert_allclose(result.outputs["logits"], tiny_logits(image), atol=1e-4)
