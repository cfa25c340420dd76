package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func testWorkspace(t *testing.T, files map[string]string) *Workspace {
	t.Helper()
	dir := t.TempDir()
	data := map[string][]byte{}
	for k, v := range files {
		data[k] = []byte(v)
	}
	writeFiles(t, dir, data)
	ws, err := LoadWorkspace(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

func TestVersionOfRecordRefusesReplacesAndMixedVersions(t *testing.T) {
	ws := testWorkspace(t, map[string]string{
		"go.work":      "go 1.26.0\n\nuse (\n\t.\n\t./a\n\t./b\n)\n",
		"go.mod":       "module github.com/eventflows/flows\n\ngo 1.26.0\n",
		"a/go.mod":     "module github.com/eventflows/flows/a\n\ngo 1.26.0\n\nrequire github.com/eventflows/flows v0.0.0\n\nreplace github.com/eventflows/flows => ..\n",
		"b/go.mod":     "module github.com/eventflows/flows/b\n\ngo 1.26.0\n\nrequire (\n\tgithub.com/eventflows/flows v0.1.0\n\tgithub.com/eventflows/flows/a v0.1.0\n)\n",
		"a/LICENSE":    "",
		"b/b_test.txt": "",
	})
	_, err := ws.VersionOfRecord()
	if err == nil {
		t.Fatal("VersionOfRecord: nil error for a replace and two versions")
	}
	for _, want := range []string{
		"a/go.mod: replace github.com/eventflows/flows: a published go.mod must not replace modules",
		"b/go.mod: requires github.com/eventflows/flows v0.1.0; the other modules require v0.0.0",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q:\n%v", want, err)
		}
	}
}

func TestSyncWorkReplacesReadsRequiredVersionsFromTheWorkspace(t *testing.T) {
	ws := testWorkspace(t, map[string]string{
		"go.work":  "go 1.26.0\n\nuse (\n\t.\n\t./a\n\t./b\n)\n",
		"go.mod":   "module github.com/eventflows/flows\n\ngo 1.26.0\n",
		"a/go.mod": "module github.com/eventflows/flows/a\n\ngo 1.26.0\n\nrequire github.com/eventflows/flows v0.1.0\n",
		"b/go.mod": "module github.com/eventflows/flows/b\n\ngo 1.26.0\n\nrequire (\n\tgithub.com/eventflows/flows v0.1.0\n\tgithub.com/eventflows/flows/a v0.1.0\n)\n",
	})
	v, err := ws.VersionOfRecord()
	if err != nil || v != "v0.1.0" {
		t.Fatalf("VersionOfRecord = %q, %v; want v0.1.0", v, err)
	}
	if changed, err := ws.SyncWorkReplaces(v); err != nil || !changed {
		t.Fatalf("SyncWorkReplaces = %v, %v; want a change", changed, err)
	}
	got := map[string]string{}
	for _, r := range ws.Work.Replace {
		got[r.Old.String()] = r.New.Path
	}
	want := map[string]string{"github.com/eventflows/flows@v0.1.0": "./", "github.com/eventflows/flows/a@v0.1.0": "./a"}
	if len(got) != len(want) || got["github.com/eventflows/flows@v0.1.0"] != "./" || got["github.com/eventflows/flows/a@v0.1.0"] != "./a" {
		t.Errorf("go.work replaces %v, want %v", got, want)
	}
	// Idempotent, and a bump moves the replaces with the requirements.
	if changed, _ := ws.SyncWorkReplaces(v); changed {
		t.Error("a second SyncWorkReplaces changed go.work")
	}
	if err := ws.SetRequires("v0.2.0"); err != nil {
		t.Fatal(err)
	}
	ws, err = LoadWorkspace(ws.Root)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := ws.VersionOfRecord(); err != nil || v != "v0.2.0" {
		t.Fatalf("after SetRequires(v0.2.0): VersionOfRecord = %q, %v", v, err)
	}
	if _, err := ws.SyncWorkReplaces("v0.2.0"); err != nil {
		t.Fatal(err)
	}
	for _, r := range ws.Work.Replace {
		if r.Old.Version != "v0.2.0" {
			t.Errorf("go.work still replaces %s", r.Old)
		}
	}
	if n := strings.Count(readFile(t, filepath.Join(ws.Root, "go.work")), "replace ("); n != 1 {
		t.Errorf("go.work has %d replace blocks, want 1", n)
	}
}

func TestStripOwnSums(t *testing.T) {
	ws := testWorkspace(t, map[string]string{
		"go.work":  "go 1.26.0\n\nuse (\n\t.\n\t./a\n)\n",
		"go.mod":   "module github.com/eventflows/flows\n\ngo 1.26.0\n",
		"a/go.mod": "module github.com/eventflows/flows/a\n\ngo 1.26.0\n",
	})
	in := "github.com/eventflows/flows v0.1.0 h1:x=\n" +
		"github.com/eventflows/flows v0.1.0/go.mod h1:y=\n" +
		"github.com/eventflows/flowsy v1.0.0 h1:z=\n" +
		"github.com/google/uuid v1.6.0 h1:u=\n"
	want := "github.com/eventflows/flowsy v1.0.0 h1:z=\ngithub.com/google/uuid v1.6.0 h1:u=\n"
	if got := string(ws.StripOwnSums([]byte(in))); got != want {
		t.Errorf("StripOwnSums =\n%s\nwant\n%s", got, want)
	}
}

// The tag order of RELEASING.md: the core first, each module after those it
// requires.
func TestPublishedInTagOrder(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Skip(err)
	}
	ws, err := LoadWorkspace(root)
	if err != nil {
		t.Fatal(err)
	}
	mods, err := ws.Published()
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range mods {
		pos[m.Path] = i
	}
	if pos[corePath] != 0 {
		t.Errorf("the core is tag %d, want the first", pos[corePath])
	}
	for _, m := range mods {
		for _, r := range m.File.Require {
			if p, ok := pos[r.Mod.Path]; ok && p > pos[m.Path] {
				t.Errorf("%s is tagged before %s, which it requires", m.Path, r.Mod.Path)
			}
		}
	}
	for _, p := range []string{"bench", "examples/jetstream", "examples/manifests", "internal/releasecheck"} {
		if _, ok := pos[corePath+"/"+p]; ok {
			t.Errorf("%s is published; it is not meant to be", p)
		}
	}
}
