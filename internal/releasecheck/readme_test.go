package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func readFile(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func repoWorkspace(t *testing.T) *Workspace {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Skip(err)
	}
	ws, err := LoadWorkspace(root)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

// The release check runs the Install lines as written; here, that there is a
// line for each published module and nothing else.
func TestReadmeInstallCoversEveryPublishedModule(t *testing.T) {
	ws := repoWorkspace(t)
	install, err := ReadInstall(filepath.Join(ws.Root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	mods, err := ws.Published()
	if err != nil {
		t.Fatal(err)
	}
	if err := checkInstallCoversModules(ws, mods, install, ws.Root); err != nil {
		t.Error(err)
	}
	var installs []string
	for _, c := range install.Commands {
		if strings.HasPrefix(c, "go install ") {
			installs = append(installs, c)
		}
	}
	if !slices.ContainsFunc(installs, func(c string) bool { return strings.Contains(c, corePath+"/cmd/flows@") }) {
		t.Errorf("no go install line for the flows command in %q", install.Commands)
	}
}

// readmeTestCommand is the `go test` line of the README's first block.
func readmeTestCommand(t *testing.T, root string) string {
	t.Helper()
	blocks := codeBlocks(readFile(t, filepath.Join(root, "README.md")), "sh")
	if len(blocks) == 0 {
		t.Fatal("README.md has no sh block")
	}
	for line := range strings.Lines(blocks[0]) {
		if strings.HasPrefix(line, "go test ") {
			cmd, _, _ := strings.Cut(line, "#")
			return strings.TrimSpace(cmd)
		}
	}
	t.Fatal("the README's first sh block has no go test line")
	return ""
}

func TestCIRunsTheReadmeTestCommand(t *testing.T) {
	ws := repoWorkspace(t)
	cmd := readmeTestCommand(t, ws.Root)
	for line := range strings.Lines(readFile(t, filepath.Join(ws.Root, ".ci", "run"))) {
		if strings.TrimSpace(line) == cmd {
			return
		}
	}
	t.Errorf(".ci/run does not run the README's test command %q", cmd)
}

// The README's test command selects every package of every module of the
// workspace, also from a checkout whose path has a space in it.
func TestReadmeTestCommandWorksInAPathWithASpace(t *testing.T) {
	ws := repoWorkspace(t)
	list := "go list" + strings.TrimPrefix(readmeTestCommand(t, ws.Root), "go test -race")
	spaced := filepath.Join(t.TempDir(), "a checkout")
	if err := os.Symlink(ws.Root, spaced); err != nil {
		t.Skip(err)
	}
	run := func(dir string, name string, args ...string) []string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PWD="+dir, "GOWORK=", "GOFLAGS=-mod=readonly")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("in %q: %s %s: %v\n%s", dir, name, strings.Join(args, " "), err, out)
		}
		return strings.Fields(string(out))
	}
	got := run(spaced, "sh", "-c", list)
	var want []string
	for _, m := range ws.Modules {
		want = append(want, run(filepath.Join(spaced, filepath.FromSlash(m.Dir)), "go", "list", "./...")...)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s selects\n%s\nwant every package of the workspace's modules:\n%s", list, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
