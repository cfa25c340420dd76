package main

import (
	"archive/zip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func zipNames(t *testing.T, name string) []string {
	t.Helper()
	r, err := zip.OpenReader(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var names []string
	for _, f := range r.File {
		names = append(names, f.Name)
	}
	slices.Sort(names)
	return names
}

// A module's zip must not carry a nested module's files: the core's zip once
// held the examples' binaries and would hold manifest/ and cmd/ too.
func TestProxyPublishesModulesWithoutNestedModules(t *testing.T) {
	src := t.TempDir()
	writeFiles(t, src, map[string][]byte{
		"go.mod":           []byte("module example.com/m\n\ngo 1.26.0\n"),
		"m.go":             []byte("package m\n"),
		"LICENSE":          []byte("licence\n"),
		"sub/go.mod":       []byte("module example.com/m/sub\n\ngo 1.26.0\n\nrequire example.com/m v0.1.0\n"),
		"sub/sub.go":       []byte("package sub\n"),
		"internal/x/x.go":  []byte("package x\n"),
		"vendor/v/v.go":    []byte("package v\n"),
		"testdata/data.go": []byte("not go\n"),
	})
	p := &Proxy{Dir: t.TempDir()}
	if err := p.AddDir("example.com/m", "v0.1.0", src); err != nil {
		t.Fatal(err)
	}
	if err := p.AddFiles("example.com/m/sub", "v0.1.0", filepath.Join(src, "sub"), []string{"go.mod", "sub.go"}); err != nil {
		t.Fatal(err)
	}
	got := zipNames(t, p.Zip("example.com/m", "v0.1.0"))
	want := []string{
		"example.com/m@v0.1.0/LICENSE",
		"example.com/m@v0.1.0/go.mod",
		"example.com/m@v0.1.0/internal/x/x.go",
		"example.com/m@v0.1.0/m.go",
		"example.com/m@v0.1.0/testdata/data.go",
	}
	if !slices.Equal(got, want) {
		t.Errorf("zip of example.com/m holds\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := zipNames(t, p.Zip("example.com/m/sub", "v0.1.0")); !slices.Equal(got, []string{"example.com/m/sub@v0.1.0/go.mod", "example.com/m/sub@v0.1.0/sub.go"}) {
		t.Errorf("zip of example.com/m/sub holds %q", got)
	}
	for _, f := range []string{"list", "v0.1.0.info", "v0.1.0.mod", "v0.1.0.zip"} {
		if _, err := os.Stat(filepath.Join(p.Dir, "example.com", "m", "sub", "@v", f)); err != nil {
			t.Errorf("the proxy has no %s for example.com/m/sub: %v", f, err)
		}
	}
	mod, _ := os.ReadFile(filepath.Join(p.Dir, "example.com", "m", "sub", "@v", "v0.1.0.mod"))
	if !strings.Contains(string(mod), "require example.com/m v0.1.0") {
		t.Errorf("v0.1.0.mod is not sub's go.mod:\n%s", mod)
	}
	list, _ := os.ReadFile(filepath.Join(p.Dir, "example.com", "m", "@v", "list"))
	if string(list) != "v0.1.0\n" {
		t.Errorf("list = %q, want %q", list, "v0.1.0\n")
	}
}
