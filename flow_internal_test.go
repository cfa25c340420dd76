package flows

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// validText and blank are quick forms of utf8.ValidString and of
// strings.TrimSpace(s) == "": they must agree with them on every input,
// or events would be accepted or refused differently.
func TestValidTextAndBlankAgreeWithTheLibrary(t *testing.T) {
	cases := []string{"", " ", "\t\n", "a", " a", "a ", "1", "dev.knative.sources.ping", "\u00a0", "\u0085x", "\u3000",
		"é", "ok\xff", "\xff", "\xc3", "abc\xe2\x82", "\u2028", "x\u00a0", "\x00", "\x7f", "\x1f", "日本", string([]byte{0xed, 0xa0, 0x80})}
	for _, s := range cases {
		if got, want := validText(s), utf8.ValidString(s); got != want {
			t.Errorf("validText(%q) = %v, utf8.ValidString says %v", s, got, want)
		}
		if got, want := blank(s), strings.TrimSpace(s) == ""; got != want {
			t.Errorf("blank(%q) = %v, strings.TrimSpace says %v", s, got, want)
		}
	}
}

func FuzzValidTextAndBlank(f *testing.F) {
	f.Add("dev.knative.sources.ping")
	f.Add(" \u00a0")
	f.Add("ok\xff")
	f.Fuzz(func(t *testing.T, s string) {
		if validText(s) != utf8.ValidString(s) {
			t.Errorf("validText(%q) disagrees with utf8.ValidString", s)
		}
		if blank(s) != (strings.TrimSpace(s) == "") {
			t.Errorf("blank(%q) disagrees with strings.TrimSpace", s)
		}
	})
}
