"""Ed25519 signatures of a bundle's MANIFEST.json (which holds the sha256 of every other file).

Keys are PEM files: a PKCS#8 private key to sign, its SubjectPublicKeyInfo public key to verify.
"""

from __future__ import annotations

from pathlib import Path

from appliance.bundle.manifest import BundleError, MANIFEST_NAME, SIGNATURE_NAME


def _crypto():  # type: ignore[no-untyped-def]
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise BundleError("checking signatures needs the 'cryptography' package in this Python") from None
    return InvalidSignature, serialization, ed25519


def generate_keypair(private_path: Path) -> Path:
    """Write a new private key to ``private_path`` (mode 0600) and its public key beside it (.pub)."""
    _, serialization, ed25519 = _crypto()
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    private_path.touch(mode=0o600, exist_ok=False)
    private_path.write_bytes(private_pem)
    public_path = private_path.with_name(private_path.name + ".pub")
    public_path.write_bytes(public_pem)
    return public_path


def sign(manifest_bytes: bytes, private_key_path: Path) -> bytes:
    _, serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_private_key(private_key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise BundleError(f"{private_key_path}: not a readable unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise BundleError(f"{private_key_path}: not an Ed25519 key")
    return key.sign(manifest_bytes)


def check_signature(data: bytes, signature: bytes | None, public_key_path: Path, signature_name: str = SIGNATURE_NAME,
                    signed_name: str = MANIFEST_NAME) -> None:
    """Raise BundleError unless ``signature`` is the key's signature of ``data`` (the file ``signed_name``)."""
    invalid_signature, serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_public_key(public_key_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{public_key_path}: not a readable PEM public key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise BundleError(f"{public_key_path}: not an Ed25519 public key")
    if signature is None:
        raise BundleError(f"the bundle is not signed ({signature_name} is missing) and a public key is configured")
    try:
        key.verify(signature, data)
    except invalid_signature:
        raise BundleError(f"{signature_name}: the signature of {signed_name} does not match {public_key_path}"
                          ) from None
