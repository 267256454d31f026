"""MC identity-based cryptography: ECCSI (RFC 6507), SAKKE (RFC 6508), MIKEY-SAKKE (RFC 6509) with
the 3GPP identifiers and key management of TS 33.180 (Annexes D, E, F) and TS 33.179."""
