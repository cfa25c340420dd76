package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o666); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCheckTrackedFilesFlagsExecutablesAndLargeFiles(t *testing.T) {
	pe := make([]byte, 0x100)
	copy(pe, "MZ")
	binary.LittleEndian.PutUint32(pe[0x3c:], 0x80)
	copy(pe[0x80:], "PE\x00\x00")
	notPE := make([]byte, 0x100)
	copy(notPE, "MZ is how this text starts")
	macho := make([]byte, 64)
	binary.LittleEndian.PutUint32(macho, 0xfeedfacf)
	large := bytes.Repeat([]byte("x"), maxTrackedSize+1)

	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{
		"README.md":                  []byte("# hello\n"),
		"examples/demo/demo":         append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 100)...),
		"tool.exe":                   pe,
		"notes.txt":                  notPE,
		"darwin/tool":                macho,
		"big.json":                   large,
		"pkg/testdata/big.json":      large,
		"pkg/testdata/fuzz/FuzzX/ab": []byte("go test fuzz v1\n"),
	})
	git(t, dir, "init", "-q")
	git(t, dir, "add", ".")
	// Ignored and untracked files are not the check's business.
	writeFiles(t, dir, map[string][]byte{"untracked": append([]byte("\x7fELF"), make([]byte, 10)...)})

	err := CheckTrackedFiles(dir)
	if err == nil {
		t.Fatal("CheckTrackedFiles: nil error, want the executables and the large file reported")
	}
	msg := err.Error()
	for _, want := range []string{
		"examples/demo/demo: a ELF executable is tracked",
		"tool.exe: a PE executable is tracked",
		"darwin/tool: a Mach-O executable is tracked",
		"big.json: 1048577 bytes, over the 1 MiB allowed outside testdata/",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not report %q:\n%s", want, msg)
		}
	}
	for _, unwanted := range []string{"README.md", "notes.txt", "pkg/testdata", "untracked"} {
		if strings.Contains(msg, unwanted) {
			t.Errorf("error reports %s, which is fine:\n%s", unwanted, msg)
		}
	}
}

// The repository itself: the demos' binaries were committed once.
func TestRepositoryTracksNoBuildOutputs(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Skip(err)
	}
	if err := CheckTrackedFiles(root); err != nil {
		t.Error(err)
	}
}
