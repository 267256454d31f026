"""Application-layer protection at the interconnection border (TS 33.180 clause 9).

``ear`` holds the EAR codec and signature (9.6, 8.5.5, Annex J); ``ear_check`` the receiver
checks of WA-SP-26 as a pure function.  Replay stores live beside them; nothing here does I/O.
"""
