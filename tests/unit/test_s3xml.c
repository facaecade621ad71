/* Unit tests for s3xml: S3's and STS's XML answers as s3.c reads them (a
 * listing page, an error, the bounds and what is refused). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "receiver/s3xml.h"

/* A ListObjectsV2 page as S3 sends it (one line in S3's case; indented here,
 * as some S3-compatible servers do): the second page of a listing, with keys
 * that need escaping. */
static const char LISTING[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n"
    "  <Name>caps</Name>\n"
    "  <Prefix>cap/</Prefix>\n"
    "  <ContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</ContinuationToken>\n"
    "  <NextContinuationToken>1ZvQ4ggz&amp;W2Uq+a/B=</NextContinuationToken>\n"
    "  <KeyCount>3</KeyCount>\n"
    "  <MaxKeys>1000</MaxKeys>\n"
    "  <IsTruncated>true</IsTruncated>\n"
    "  <Contents>\n"
    "    <Key>cap/node-1/2026-12-05T10:00:00Z.pcapng</Key>\n"
    "    <LastModified>2026-12-05T10:05:01.000Z</LastModified>\n"
    "    <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag>\n"
    "    <Size>16777216</Size>\n"
    "    <Owner><ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>"
    "<DisplayName>ops</DisplayName></Owner>\n"
    "    <StorageClass>STANDARD</StorageClass>\n"
    "  </Contents>\n"
    "  <Contents>\n"
    "    <Key>cap/a&amp;b &lt;c&gt; &#x4E2D;&#25991;.pcapng</Key>\n"
    "    <LastModified>2026-12-05T10:06:00.000Z</LastModified>\n"
    "    <Size>0</Size>\n"
    "  </Contents>\n"
    "  <CommonPrefixes><Prefix>cap/old/</Prefix></CommonPrefixes>\n"
    "  <Contents>\n"
    "    <Key>cap/node-2/x.pcapng.idx</Key>\n"
    "    <Size>42</Size>\n"
    "  </Contents>\n"
    "</ListBucketResult>\n";

static ps_s3xml *parse_ok(const char *xml)
{
    ps_s3xml *d = NULL;
    char err[256] = "";
    int rc = ps_s3xml_parse(&d, xml, strlen(xml), err, sizeof(err));
    if (rc != 0)
        fail_msg("refused: %s", err);
    assert_non_null(d);
    return d;
}

/* Expects the document refused, with an error naming why. */
static void refused(const void *xml, size_t len, const char *why)
{
    ps_s3xml *d = (ps_s3xml *)&d; /* untouched on failure */
    char err[256] = "";
    assert_int_equal(ps_s3xml_parse(&d, xml, len, err, sizeof(err)), PS_S3XML_E_REFUSED);
    assert_ptr_equal(d, (ps_s3xml *)&d);
    if (!strstr(err, why))
        fail_msg("error \"%s\" does not say \"%s\"", err, why);
}

static void expect_text(const ps_s3xml *d, size_t e, const char *name, const char *want)
{
    char *t = ps_s3xml_text(d, e, name);
    if (!want) {
        assert_null(t);
        return;
    }
    assert_non_null(t);
    assert_string_equal(t, want);
    free(t);
}

static void test_listing_page(void **state)
{
    (void)state;
    ps_s3xml *d = parse_ok(LISTING);
    const size_t r = PS_S3XML_ROOT;
    /* local names: S3's namespace does not show */
    assert_string_equal(ps_s3xml_name(d, r), "ListBucketResult");
    expect_text(d, r, "IsTruncated", "true");
    expect_text(d, r, "NextContinuationToken", "1ZvQ4ggz&W2Uq+a/B=");
    expect_text(d, r, "ContinuationToken", "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
    expect_text(d, r, "NoSuchElement", NULL);

    const char *keys[] = {"cap/node-1/2026-12-05T10:00:00Z.pcapng",
                          "cap/a&b <c> \xe4\xb8\xad\xe6\x96\x87.pcapng", "cap/node-2/x.pcapng.idx"};
    const char *sizes[] = {"16777216", "0", "42"};
    const char *modified[] = {"2026-12-05T10:05:01.000Z", "2026-12-05T10:06:00.000Z", NULL};
    size_t n = 0;
    for (size_t c = ps_s3xml_child(d, r, r, "Contents"); c;
         c = ps_s3xml_child(d, r, c, "Contents")) {
        assert_true(n < 3);
        assert_string_equal(ps_s3xml_name(d, c), "Contents");
        expect_text(d, c, "Key", keys[n]);
        expect_text(d, c, "Size", sizes[n]);
        /* at or below this Contents only: the third has none, and does not
         * borrow a neighbour's */
        expect_text(d, c, "LastModified", modified[n]);
        n++;
    }
    assert_int_equal(n, 3);
    /* entities in any text, and an element's text takes in its descendants' */
    expect_text(d, r, "ETag", "\"9b2cf535f27731c974343645a3985328\"");
    expect_text(d, r, "Owner",
                "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06aops");
    /* the first in document order: Prefix of the page, not of CommonPrefixes */
    expect_text(d, r, "Prefix", "cap/");
    /* children only, not grandchildren */
    assert_int_equal(ps_s3xml_child(d, r, r, "Key"), 0);
    size_t cp = ps_s3xml_child(d, r, r, "CommonPrefixes");
    assert_true(cp > 0);
    expect_text(d, cp, "Prefix", "cap/old/");
    ps_s3xml_free(d);
}

static void test_last_page_and_empty(void **state)
{
    (void)state;
    ps_s3xml *d = parse_ok("<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                           "<Name>caps</Name><Prefix></Prefix><KeyCount>0</KeyCount>"
                           "<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>"
                           "</ListBucketResult>");
    expect_text(d, PS_S3XML_ROOT, "IsTruncated", "false");
    expect_text(d, PS_S3XML_ROOT, "Prefix", ""); /* present and empty: not NULL */
    assert_int_equal(ps_s3xml_child(d, PS_S3XML_ROOT, PS_S3XML_ROOT, "Contents"), 0);
    ps_s3xml_free(d);
    ps_s3xml_free(NULL);
}

static void test_error_bodies(void **state)
{
    (void)state;
    /* S3's */
    ps_s3xml *d = parse_ok("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                           "<Error><Code>NoSuchKey</Code><Message>The specified key does not "
                           "exist.</Message><Key>cap/a&amp;b</Key>"
                           "<RequestId>4442587FB7D0A2F9</RequestId></Error>");
    assert_string_equal(ps_s3xml_name(d, PS_S3XML_ROOT), "Error");
    expect_text(d, PS_S3XML_ROOT, "Code", "NoSuchKey");
    expect_text(d, PS_S3XML_ROOT, "Message", "The specified key does not exist.");
    expect_text(d, PS_S3XML_ROOT, "Key", "cap/a&b");
    ps_s3xml_free(d);
    /* STS's: the Code one level further down, in a namespace */
    d = parse_ok("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
                 "<Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>"
                 "<Message>bad token</Message></Error><RequestId>x</RequestId></ErrorResponse>");
    assert_string_equal(ps_s3xml_name(d, PS_S3XML_ROOT), "ErrorResponse");
    expect_text(d, PS_S3XML_ROOT, "Code", "InvalidIdentityToken");
    expect_text(d, PS_S3XML_ROOT, "Message", "bad token");
    ps_s3xml_free(d);
    /* CreateMultipartUpload's answer */
    d = parse_ok("<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                 "<Bucket>caps</Bucket><Key>k</Key><UploadId>VXBsb2FkIElE.ZWx2aW5n-</UploadId>"
                 "</InitiateMultipartUploadResult>");
    expect_text(d, PS_S3XML_ROOT, "UploadId", "VXBsb2FkIElE.ZWx2aW5n-");
    ps_s3xml_free(d);
}

static void test_namespaces_cdata_comments(void **state)
{
    (void)state;
    /* a prefix, a default namespace inside it, attributes, a comment, a
     * processing instruction, CDATA: local names and the character data */
    ps_s3xml *d = parse_ok("<s3:R xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\" a=\"1\">"
                           "<s3:Key>x<!-- not text --><?pi no?><![CDATA[<y>&amp;]]>z</s3:Key>"
                           "<Code xmlns=\"urn:other\" b='2'>C</Code></s3:R>");
    assert_string_equal(ps_s3xml_name(d, PS_S3XML_ROOT), "R");
    expect_text(d, PS_S3XML_ROOT, "Key", "x<y>&amp;z");
    expect_text(d, PS_S3XML_ROOT, "Code", "C");
    ps_s3xml_free(d);
    /* ISO-8859-1 comes out as UTF-8 */
    d = parse_ok("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><Key>caf\xe9</Key>");
    expect_text(d, PS_S3XML_ROOT, "Key", "caf\xc3\xa9");
    ps_s3xml_free(d);
    /* a prefix never declared */
    const char *unbound = "<s3:Key>k</s3:Key>";
    refused(unbound, strlen(unbound), "unbound prefix");
}

static void test_malformed_and_truncated(void **state)
{
    (void)state;
    const char *bad[][2] = {
        {"<Error><Code>X</Message></Error>", "line 1 column 17: mismatched tag"}, /* at the name */
        {"<Error><Code>X</Code></Error><Error/>", "junk after document element"},
        {"<html><body>502 Bad Gateway</body>", "no element found"},
        {"Internal Server Error", "syntax error"},
        {"<Key>a & b</Key>", "not well-formed"},
        {"<Key>&nbsp;</Key>", "undefined entity"},
        {"<Key>&#0;</Key>", "reference to invalid character number"},
        {"<?xml version=\"1.0\" encoding=\"KOI8-R\"?><Key/>", "unknown encoding"},
        {"\n\n  <Key>\n<", "line 4 column 1: unclosed token"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        refused(bad[i][0], strlen(bad[i][0]), bad[i][1]);
    refused("", 0, "empty");
    refused("<K>\0</K>", 8, "not well-formed");
    /* a page cut anywhere (a connection closed early) is refused, never
     * half read */
    size_t len = strlen(LISTING);
    size_t end = len - 1; /* the final newline is not part of the document */
    for (size_t cut = 0; cut < end; cut++) {
        ps_s3xml *d = NULL;
        char err[256] = "";
        int rc = ps_s3xml_parse(&d, LISTING, cut, err, sizeof(err));
        if (rc != PS_S3XML_E_REFUSED)
            fail_msg("a listing cut at %zu of %zu bytes: %d", cut, len, rc);
        assert_null(d);
        assert_true(err[0] != '\0');
    }
}

static void test_doctype_refused(void **state)
{
    (void)state;
    /* billion laughs: never expanded, refused at the DOCTYPE */
    const char *lol = "<?xml version=\"1.0\"?>\n"
                      "<!DOCTYPE lolz [\n"
                      " <!ENTITY lol \"lol\">\n"
                      " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
                      " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
                      " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
                      "]>\n"
                      "<Error><Code>&lol3;</Code></Error>";
    refused(lol, strlen(lol), "line 2 column 16: a document type declaration");
    /* an external entity: nothing is read */
    const char *xxe = "<!DOCTYPE Error [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
                      "<Error><Code>&x;</Code></Error>";
    refused(xxe, strlen(xxe), "document type declaration");
    const char *ext = "<!DOCTYPE Error SYSTEM \"http://example.com/e.dtd\"><Error/>";
    refused(ext, strlen(ext), "document type declaration");
}

static void test_oversized_text(void **state)
{
    (void)state;
    ps_buf b = PS_BUF_INIT;
    /* exactly the limit, split by an entity and a CDATA section (expat hands
     * it over in pieces): accepted */
    assert_int_equal(ps_buf_append(&b, "<Error><Key>", 12), 0);
    assert_int_equal(ps_buf_append(&b, "&amp;<![CDATA[c]]>", 18), 0);
    assert_int_equal(ps_buf_reserve(&b, PS_S3XML_MAX_TEXT), 0);
    memset(b.data + b.len, 'k', PS_S3XML_MAX_TEXT - 2);
    b.len += PS_S3XML_MAX_TEXT - 2;
    size_t end = b.len;
    assert_int_equal(ps_buf_append(&b, "</Key></Error>", 14), 0);
    ps_s3xml *d = NULL;
    char err[256];
    assert_int_equal(ps_s3xml_parse(&d, b.data, b.len, err, sizeof(err)), 0);
    char *t = ps_s3xml_text(d, PS_S3XML_ROOT, "Key");
    assert_non_null(t);
    assert_int_equal(strlen(t), PS_S3XML_MAX_TEXT);
    free(t);
    ps_s3xml_free(d);
    /* one byte more: refused, naming the element */
    b.len = end;
    assert_int_equal(ps_buf_append(&b, "k</Key></Error>", 15), 0);
    refused(b.data, b.len, "the text of <Key> is longer than 65536 bytes");
    /* a parent's own text counts alone: children's text is theirs, so a
     * listing of many keys is not one oversized element */
    ps_buf_reset(&b);
    assert_int_equal(ps_buf_append(&b, "<L>", 3), 0);
    char k[1100];
    memset(k, 'x', sizeof(k));
    for (int i = 0; i < 100; i++) {
        assert_int_equal(ps_buf_append(&b, "<Contents><Key>", 15), 0);
        assert_int_equal(ps_buf_append(&b, k, sizeof(k)), 0);
        assert_int_equal(ps_buf_append(&b, "</Key></Contents>\n", 18), 0);
    }
    assert_int_equal(ps_buf_append(&b, "</L>", 4), 0);
    assert_int_equal(ps_s3xml_parse(&d, b.data, b.len, err, sizeof(err)), 0);
    t = ps_s3xml_text(d, PS_S3XML_ROOT, "L");
    assert_int_equal(strlen(t), 100 * (sizeof(k) + 1));
    free(t);
    ps_s3xml_free(d);
    ps_buf_free(&b);
    /* the whole document */
    char *big = calloc(1, PS_S3XML_MAX_INPUT + 1);
    assert_non_null(big);
    memcpy(big, "<a>", 3);
    refused(big, PS_S3XML_MAX_INPUT + 1, "16777217 bytes of XML, more than 16777216");
    free(big);
}

static void test_depth_and_count(void **state)
{
    (void)state;
    ps_buf b = PS_BUF_INIT;
    for (int depth = PS_S3XML_MAX_DEPTH; depth <= PS_S3XML_MAX_DEPTH + 1; depth++) {
        ps_buf_reset(&b);
        for (int i = 0; i < depth; i++)
            assert_int_equal(ps_buf_append(&b, "<a>", 3), 0);
        for (int i = 0; i < depth; i++)
            assert_int_equal(ps_buf_append(&b, "</a>", 4), 0);
        ps_s3xml *d = NULL;
        char err[256];
        int rc = ps_s3xml_parse(&d, b.data, b.len, err, sizeof(err));
        if (depth == PS_S3XML_MAX_DEPTH) {
            assert_int_equal(rc, 0);
            ps_s3xml_free(d);
        } else {
            refused(b.data, b.len, "<a> is nested deeper than 32 elements");
        }
    }
    /* as many elements as allowed (the root and its children), then one more */
    for (int extra = 0; extra <= 1; extra++) {
        ps_buf_reset(&b);
        assert_int_equal(ps_buf_append(&b, "<L>", 3), 0);
        for (int i = 0; i < PS_S3XML_MAX_ELEMENTS - 1 + extra; i++)
            assert_int_equal(ps_buf_append(&b, "<K/>", 4), 0);
        assert_int_equal(ps_buf_append(&b, "</L>", 4), 0);
        if (extra) {
            refused(b.data, b.len, "more than 65536 elements");
            continue;
        }
        ps_s3xml *d = NULL;
        char err[256];
        assert_int_equal(ps_s3xml_parse(&d, b.data, b.len, err, sizeof(err)), 0);
        size_t n = 0;
        for (size_t c = ps_s3xml_child(d, 0, 0, "K"); c; c = ps_s3xml_child(d, 0, c, "K"))
            n++;
        assert_int_equal(n, PS_S3XML_MAX_ELEMENTS - 1);
        ps_s3xml_free(d);
    }
    ps_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listing_page),
        cmocka_unit_test(test_last_page_and_empty),
        cmocka_unit_test(test_error_bodies),
        cmocka_unit_test(test_namespaces_cdata_comments),
        cmocka_unit_test(test_malformed_and_truncated),
        cmocka_unit_test(test_doctype_refused),
        cmocka_unit_test(test_oversized_text),
        cmocka_unit_test(test_depth_and_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
