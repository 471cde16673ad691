"""A real TLS scanner (sslyze, pinned in the test extras) against the appliance on HTTPS: it must find every
protocol, cipher suite, curve and certificate within Mozilla's "intermediate" profile, no known TLS vulnerability,
and HSTS on the console with the two years Mozilla recommends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.tls.lifecycle import init
from appliance.tls.store import TlsPaths
from tests.support.https import HttpsAppliance, start_https_appliance
from tests.tls.conftest import remote_only_catalogue

sslyze = pytest.importorskip("sslyze", reason="needs sslyze (the test extras)")

HSTS_MIN_AGE = 63072000  # Mozilla's recommendation (sslyze's check of it is switched off in this release)


@pytest.fixture(scope="module")
def scanned_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsAppliance]:
    root = tmp_path_factory.mktemp("scanned")
    init(TlsPaths.of(root / "tls"), ["localhost", "127.0.0.1"])  # what scripts/install makes, for this name
    with start_https_appliance(remote_only_catalogue(root / "models.toml"), root / "state", root / "tls") as running:
        yield running


def scan(box: HttpsAppliance) -> object:
    from sslyze import (CertificateInfoExtraArgument, Scanner, ScanCommandsExtraArguments, ServerNetworkLocation,
                        ServerScanRequest, ServerScanStatusEnum)
    from sslyze.mozilla_tls_profile.tls_config_checker import SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER
    from sslyze.plugins.scan_commands import ScanCommand

    request = ServerScanRequest(
        server_location=ServerNetworkLocation("localhost", box.port, ip_address="127.0.0.1"),
        scan_commands={*SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER, ScanCommand.HTTP_HEADERS,
                       ScanCommand.TLS_1_3_EARLY_DATA, ScanCommand.SESSION_RESUMPTION},
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=Path(box.ca_file))))
    scanner = Scanner(per_server_concurrent_connections_limit=4)
    scanner.queue_scans([request])
    (result,) = list(scanner.get_results())
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, result.connectivity_error_trace
    return result


# Key-exchange groups OpenSSL offers beyond the profile's (X25519, P-256, P-384): both stronger, and Python's ssl
# module has no call to narrow the list without also dropping X25519.
STRONGER_THAN_THE_PROFILE = {"secp521r1", "X448"}


@pytest.mark.filterwarnings("ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning")
def test_sslyze_finds_nothing_weak_and_the_headers_in_place(scanned_box: HttpsAppliance) -> None:
    from sslyze.mozilla_tls_profile.tls_config_checker import (MozillaTlsConfiguration,
                                                               ServerNotCompliantWithTlsConfiguration,
                                                               TlsConfigurationEnum,
                                                               check_server_against_tls_configuration)

    result = scan(scanned_box)
    # Lists every issue outside the profile: SSL 2/3, TLS 1.0/1.1, a cipher suite or curve not in it, a weak key,
    # a certificate living over 366 days, one that does not verify with the CA, compression, Heartbleed, ROBOT,
    # CCS injection, insecure renegotiation, no fallback SCSV, no extended master secret.
    try:
        check_server_against_tls_configuration(result, MozillaTlsConfiguration.get(
            TlsConfigurationEnum.MOZILLA_INTERMEDIATE))
    except ServerNotCompliantWithTlsConfiguration as outside:
        assert set(outside.issues) == {"tls_curves"}, outside.issues
        extra = {name.strip(" '{}") for name in outside.issues["tls_curves"].split("{")[1].split("}")[0].split(",")}
        assert extra <= STRONGER_THAN_THE_PROFILE, outside.issues

    scans = result.scan_result
    for old in ("ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites"):
        assert not getattr(scans, old).result.is_tls_version_supported, old
    assert scans.tls_1_3_cipher_suites.result.is_tls_version_supported
    tls12 = {s.cipher_suite.openssl_name for s in scans.tls_1_2_cipher_suites.result.accepted_cipher_suites}
    assert tls12 and all(name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name) for name in tls12), tls12
    assert not scans.tls_1_3_early_data.result.supports_early_data  # no 0-RTT: no replayable requests
    curves = {curve.name for curve in scans.elliptic_curves.result.supported_curves}
    assert {"X25519", "secp256r1"} <= curves and curves <= {"X25519", "secp256r1", "secp384r1",
                                                           *STRONGER_THAN_THE_PROFILE}, curves
    deployment = scans.certificate_info.result.certificate_deployments[0]
    assert deployment.verified_certificate_chain is not None and deployment.received_chain_has_valid_order
    assert not deployment.verified_chain_has_sha1_signature

    headers = scans.http_headers.result
    assert headers.http_error_trace is None and headers.http_path_redirected_to == "/console/"
    assert headers.strict_transport_security_header is not None
    assert headers.strict_transport_security_header.max_age >= HSTS_MIN_AGE
