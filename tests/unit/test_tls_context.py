"""Server TLS context: sources (files, Secrets Manager, S3, self-signed), protocol floor, in-place reload."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import threading

import pytest
import trustme

from postern.config import Settings
from postern_gateway.trust import tls


@pytest.fixture
def ca():
    return trustme.CA()


def _write(path, data: bytes):
    with open(path, "wb") as f:
        f.write(data)


def files_settings(tmp_path, cert) -> Settings:
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(str(tmp_path / "cert.pem"), append=True)
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    return Settings().replace(tls_cert_file=str(tmp_path / "cert.pem"), tls_key_file=str(tmp_path / "key.pem"),
                              tls_reload_interval=0.05)


def handshake(ctx: ssl.SSLContext, client: ssl.SSLContext, server_hostname="mail.example.test"):
    """One TLS handshake over loopback: returns (peer cert DER, negotiated version) or raises."""
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]
    errors = []

    def serve():
        conn, _ = lsock.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with client.wrap_socket(raw, server_hostname=server_hostname) as s:
                der, version = s.getpeercert(binary_form=True), s.version()
                s.sendall(b"x")
                return der, version
    finally:
        t.join(5)
        lsock.close()


def fp(der: bytes) -> str:
    import hashlib

    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, len(h), 2))


def test_no_source_means_no_tls():
    assert tls.server_context(Settings()) is None


def test_files_source_verified_by_client(tmp_path, ca):
    cert = ca.issue_cert("mail.example.test")
    ctx = tls.server_context(files_settings(tmp_path, cert))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    der, version = handshake(ctx, client)
    assert version in ("TLSv1.2", "TLSv1.3")
    assert fp(der) == ctx.postern_store.fingerprint


def test_tls_1_1_and_below_refused(tmp_path, ca):
    ctx = tls.server_context(files_settings(tmp_path, ca.issue_cert("mail.example.test")))
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    try:
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    with pytest.raises((ssl.SSLError, OSError)):
        handshake(ctx, old)


def test_context_options():
    ctx = tls.new_context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_COMPRESSION
    names = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names and all("GCM" in n or "CHACHA20" in n for n in names)
    assert not any("CBC" in n or "RC4" in n or "SHA1" in n.split("-")[-1] for n in names)


def test_mismatched_key_fails_at_start(tmp_path, ca):
    s = files_settings(tmp_path, ca.issue_cert("mail.example.test"))
    ca.issue_cert("other.test").private_key_pem.write_to_path(s.tls_key_file)
    with pytest.raises(tls.TlsConfigError):
        tls.server_context(s)
    with pytest.raises(tls.TlsConfigError):
        tls.server_context(s.replace(tls_cert_file=str(tmp_path / "missing.pem")))


def test_self_signed_has_sans_and_fingerprint():
    from cryptography import x509

    s = Settings().replace(tls_self_signed=True, hostname="mail.example.test")
    ctx = tls.server_context(s)
    store = ctx.postern_store
    assert store.source == "self-signed" and len(store.fingerprint) == 95
    cert = x509.load_pem_x509_certificate(store.material.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"mail.example.test", "localhost"}
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    # a client pinning the printed fingerprint accepts it
    client = ssl.create_default_context(cadata=store.material.cert_pem.decode())
    der, _ = handshake(ctx, client, server_hostname="localhost")
    assert fp(der) == store.fingerprint
    # reload keeps the generated certificate (nothing to re-read)
    assert store.reload() is False and fp(handshake(ctx, client, "localhost")[0]) == store.fingerprint


def test_reload_in_place_changes_new_handshakes(tmp_path, ca):
    s = files_settings(tmp_path, ca.issue_cert("mail.example.test"))
    ctx = tls.server_context(s)
    store = ctx.postern_store
    client = ssl.create_default_context()
    ca.configure_trust(client)
    first = fp(handshake(ctx, client)[0])
    assert store.reload() is False  # unchanged files: nothing to do
    files_settings(tmp_path, ca.issue_cert("mail.example.test"))
    os.utime(s.tls_cert_file, ns=(1, 1))  # make the mtime change visible even within one tick
    assert store.files_changed()
    assert store.reload() is True
    second = fp(handshake(ctx, client)[0])
    assert second != first and second == store.fingerprint and store.reloads == 1
    # a broken replacement is refused and the current certificate stays in service
    _write(s.tls_cert_file, b"not a certificate")
    assert store.reload() is False
    assert fp(handshake(ctx, client)[0]) == second


def test_periodic_check_and_sighup_reload(tmp_path, ca):
    s = files_settings(tmp_path, ca.issue_cert("mail.example.test"))
    store = tls.certificate_store(s)

    async def scenario():
        store.start()
        try:
            files_settings(tmp_path, ca.issue_cert("mail.example.test"))
            os.utime(s.tls_cert_file, ns=(2, 2))
            for _ in range(100):  # the watcher notices the new mtime
                await asyncio.sleep(0.05)
                if store.reloads == 1:
                    break
            assert store.reloads == 1
            # SIGHUP re-reads even without an mtime change (e.g. a secret rotated)
            files_settings(tmp_path, ca.issue_cert("mail.example.test"))
            os.utime(s.tls_cert_file, ns=(2, 2))
            loop = asyncio.get_running_loop()
            handlers = getattr(loop, "_signal_handlers", {})
            if signal.SIGHUP not in handlers:
                pytest.skip("signal handlers unavailable here")
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(100):
                await asyncio.sleep(0.05)
                if store.reloads == 2:
                    break
            assert store.reloads == 2
        finally:
            store.stop()

    asyncio.run(scenario())


def test_secrets_manager_and_s3_sources(aws, ca):
    settings, clients, _ = aws
    cert = ca.issue_cert("mail.example.test")
    chain = b"".join(b.bytes() for b in cert.cert_chain_pems)
    key = cert.private_key_pem.bytes()
    clients.secrets.create_secret(Name="postern/tls", SecretString=json.dumps({"cert": chain.decode(),
                                                                               "key": key.decode()}))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    ctx = tls.server_context(settings.replace(tls_secret_id="postern/tls"), clients)
    assert ctx.postern_store.source == "secretsmanager"
    assert fp(handshake(ctx, client)[0]) == ctx.postern_store.fingerprint

    clients.s3.create_bucket(Bucket="certs")
    clients.s3.put_object(Bucket="certs", Key="gw/tls.pem", Body=key + chain)
    ctx2 = tls.server_context(settings.replace(tls_s3_uri="s3://certs/gw/tls.pem"), clients)
    assert ctx2.postern_store.source == "s3"
    assert fp(handshake(ctx2, client)[0]) == ctx2.postern_store.fingerprint

    # rotation in Secrets Manager: reload() picks it up in place
    cert2 = ca.issue_cert("mail.example.test")
    clients.secrets.put_secret_value(SecretId="postern/tls", SecretString=json.dumps(
        {"cert": b"".join(b.bytes() for b in cert2.cert_chain_pems).decode(),
         "key": cert2.private_key_pem.bytes().decode()}))
    old = ctx.postern_store.fingerprint
    assert ctx.postern_store.reload() is True and ctx.postern_store.fingerprint != old

    with pytest.raises(tls.TlsConfigError):
        tls.server_context(settings.replace(tls_secret_id="postern/missing"), clients)
    with pytest.raises(tls.TlsConfigError):
        tls.server_context(settings.replace(tls_s3_uri="https://not-s3"), clients)


def _secret_doc(cert) -> str:
    return json.dumps({"cert": b"".join(b.bytes() for b in cert.cert_chain_pems).decode(),
                       "key": cert.private_key_pem.bytes().decode()})


def test_a_new_secret_version_is_served_without_a_restart(aws, ca):
    """The cert function renews by writing a new version; the gateway polls the version id, not the secret."""
    settings, clients, _ = aws
    clients.secrets.create_secret(Name="postern/poll", SecretString=_secret_doc(ca.issue_cert("mail.example.test")))
    calls: list[str] = []
    clients.register_hook("before-call.secrets-manager.*", lambda model, **kw: calls.append(model.name))
    ctx = tls.server_context(settings.replace(tls_secret_id="postern/poll", tls_secret_poll_interval=0.05), clients)
    store = ctx.postern_store
    client = ssl.create_default_context()
    ca.configure_trust(client)
    first = store.fingerprint

    async def scenario():
        store.start(install_sighup=False)
        try:
            await asyncio.sleep(0.3)  # several polls, no change: no reload, no secret read
            assert store.reloads == 0 and calls.count("GetSecretValue") == 1 and calls.count("DescribeSecret") >= 3
            clients.secrets.put_secret_value(SecretId="postern/poll", SecretString=_secret_doc(
                ca.issue_cert("mail.example.test")))
            for _ in range(100):
                await asyncio.sleep(0.05)
                if store.reloads:
                    break
        finally:
            store.stop()

    asyncio.run(scenario())
    assert store.reloads == 1 and store.fingerprint != first
    assert fp(handshake(ctx, client)[0]) == store.fingerprint  # the same context, the new certificate
    assert calls.count("GetSecretValue") == 2  # read again only when the version changed


def test_a_failing_version_check_keeps_the_certificate(aws, ca):
    settings, clients, _ = aws
    clients.secrets.create_secret(Name="postern/gone", SecretString=_secret_doc(ca.issue_cert("mail.example.test")))
    store = tls.server_context(settings.replace(tls_secret_id="postern/gone"), clients).postern_store
    clients.secrets.delete_secret(SecretId="postern/gone", ForceDeleteWithoutRecovery=True)
    assert store.secret_changed() is False and store.fingerprint


def test_the_served_certificates_days_left_reach_cloudwatch(aws, ca):
    import datetime as dt

    from postern_gateway.trust.certexpiry import DIMENSION, METRIC, NAMESPACE, ExpiryPublisher

    settings, clients, _ = aws
    clients.secrets.create_secret(Name="postern/m", SecretString=_secret_doc(ca.issue_cert("mail.example.test")))
    store = tls.server_context(settings.replace(tls_secret_id="postern/m"), clients).postern_store
    left = (store.not_after - dt.datetime.now(dt.timezone.utc)).total_seconds() / 86400
    pub = ExpiryPublisher(store, clients, "mail.example.test", interval=900, tick=0.02)

    async def published(n: int) -> None:
        for _ in range(250):
            if pub.published >= n:
                return
            await asyncio.sleep(0.02)

    async def scenario():
        pub.start()
        await published(1)
        await asyncio.sleep(0.1)
        assert pub.published == 1  # at start; the next one after the interval
        clients.secrets.put_secret_value(SecretId="postern/m", SecretString=_secret_doc(
            ca.issue_cert("mail.example.test")))
        await asyncio.get_running_loop().run_in_executor(None, store.reload)
        await published(2)  # and again after the reload
        await asyncio.sleep(0.1)
        pub.stop()

    asyncio.run(scenario())
    assert pub.published == 2
    now = dt.datetime.now(dt.timezone.utc)
    r = clients.cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE, MetricName=METRIC, Dimensions=[{"Name": DIMENSION, "Value": "mail.example.test"}],
        StartTime=now - dt.timedelta(minutes=5), EndTime=now + dt.timedelta(minutes=1), Period=60,
        Statistics=["Minimum", "SampleCount"])
    (point,) = r["Datapoints"]
    assert point["SampleCount"] == 2 and abs(point["Minimum"] - left) < 0.01


def test_a_failed_metric_put_is_logged_not_raised(ca, tmp_path, caplog):
    from postern_gateway.trust.certexpiry import ExpiryPublisher

    cert = ca.issue_cert("mail.example.test")
    store = tls.server_context(files_settings(tmp_path, cert)).postern_store

    class NoCloudWatch:
        @property
        def cloudwatch(self):
            raise ConnectionError("no route")

    assert ExpiryPublisher(store, NoCloudWatch(), "h", interval=60).publish() is False
    assert "TLS expiry metric not published: ConnectionError" in caplog.text
