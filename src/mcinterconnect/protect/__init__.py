"""Application-layer protection at the interconnection border (TS 33.180 clause 9).

``ear`` holds the EAR codec and signature (9.6, 8.5.5, Annex J); ``ear_check`` the receiver
checks of WA-SP-26 as a pure function.  Replay stores live beside them; nothing here does I/O.
``spk`` holds the Signalling Protection Key of a partner link (9.1, 5.5): its file, and the ring
of SPK-IDs accepted during a rotation's grace period (``load``/``save`` read and write the file).
"""
