package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// cmdTidy brings go.mod, go.sum, go.work and go.work.sum in sync: go work sync
// (every module declares the versions the workspace tests with), go mod tidy in
// each module, go.work's replaces, and go.work.sum rebuilt from what the
// workspace's commands need. go mod tidy ignores go.work, and the modules
// require each other at a version that is tagged only at the release, so the
// modules are served to it from a file proxy of the working tree.
func cmdTidy(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tidy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	diff := fs.Bool("diff", false, "print what would change and exit 1 if anything would, changing nothing (as go mod tidy -diff)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	ws, err := LoadWorkspace(root)
	if err != nil {
		return err
	}
	version, err := ws.VersionOfRecord()
	if err != nil {
		return err
	}
	var files []string
	for _, m := range ws.Modules {
		files = append(files, filepath.Join(m.Dir, "go.mod"), filepath.Join(m.Dir, "go.sum"))
	}
	files = append(files, "go.work", "go.work.sum")
	before := map[string][]byte{}
	for _, f := range files {
		before[f], _ = os.ReadFile(filepath.Join(root, f)) // a missing go.sum reads as empty
	}

	restore := func(names []string) error {
		for _, f := range names {
			name := filepath.Join(root, f)
			if len(before[f]) == 0 && strings.HasSuffix(f, ".sum") {
				os.Remove(name)
				continue
			}
			if err := os.WriteFile(name, before[f], 0o666); err != nil {
				return err
			}
		}
		return nil
	}
	if err := tidyWorkspace(root, version); err != nil {
		if *diff {
			restore(files) // -diff changes nothing, even when it fails
		}
		return err
	}

	var changed []string
	for _, f := range files {
		after, _ := os.ReadFile(filepath.Join(root, f))
		if !bytes.Equal(before[f], after) {
			changed = append(changed, f)
			if *diff {
				fmt.Fprint(stdout, unifiedDiff(f, before[f], after))
			}
		}
	}
	if len(changed) == 0 {
		return nil
	}
	if !*diff {
		fmt.Fprintf(stdout, "updated: %s\n", strings.Join(changed, " "))
		return nil
	}
	if err := restore(changed); err != nil {
		return err
	}
	return fmt.Errorf("not tidy: %s (run: go run ./internal/releasecheck tidy)", strings.Join(changed, " "))
}

func tidyWorkspace(root, version string) error {
	scratch, err := os.MkdirTemp("", "flows-tidy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	env, err := newGoEnv(&Proxy{}, scratch)
	if err != nil {
		return err
	}
	defer env.close()
	// Each round serves the modules as they are now; a round that changes a
	// go.mod changes what the next round serves. Two rounds settle in practice.
	for round := 1; ; round++ {
		ws, err := LoadWorkspace(root)
		if err != nil {
			return err
		}
		state := snapshot(root, ws)
		if _, err := ws.SyncWorkReplaces(version); err != nil {
			return err
		}
		env.proxy = &Proxy{Dir: filepath.Join(scratch, fmt.Sprintf("proxy%d", round))}
		// The same version served with other content: drop the copies of
		// the previous round from the scratch module cache.
		for _, d := range []string{filepath.Join(env.modcache, "github.com", "eventflows"), filepath.Join(env.modcache, "cache", "download", "github.com", "eventflows")} {
			if err := os.RemoveAll(d); err != nil {
				return err
			}
		}
		for _, m := range ws.Modules {
			dir := filepath.Join(root, filepath.FromSlash(m.Dir))
			files, err := gitFiles(dir)
			if err != nil {
				return err
			}
			if err := env.proxy.AddFiles(m.Path, version, dir, files); err != nil {
				return err
			}
		}
		if _, err := env.run(root, true, "go", "work", "sync"); err != nil {
			return err
		}
		for _, m := range ws.Modules {
			dir := filepath.Join(root, filepath.FromSlash(m.Dir))
			if _, err := env.run(dir, false, "go", "mod", "tidy"); err != nil {
				return err
			}
			if err := stripOwnSums(ws, filepath.Join(dir, "go.sum")); err != nil {
				return err
			}
		}
		if snapshot(root, ws) == state {
			break
		}
		if round == 4 {
			return errors.New("go work sync and go mod tidy do not settle after 4 rounds")
		}
	}
	// go.work.sum: the checksums the workspace needs that no module's go.sum
	// has. The go command only ever adds to it, so start it afresh from what
	// listing the modules, loading every package and test, and downloading
	// every module of the build list need: then no command adds to it.
	if err := os.WriteFile(filepath.Join(root, "go.work.sum"), nil, 0o666); err != nil {
		return err
	}
	for _, args := range [][]string{{"list", "-m", "all"}, {"list", "-deps", "-test", corePath + "/..."}, {"mod", "download"}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOWORK=")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, indent(string(out)))
		}
	}
	if data, _ := os.ReadFile(filepath.Join(root, "go.work.sum")); len(data) == 0 {
		return os.Remove(filepath.Join(root, "go.work.sum"))
	}
	return nil
}

func stripOwnSums(ws *Workspace, name string) error {
	data, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	stripped := ws.StripOwnSums(data)
	if len(stripped) == 0 {
		return os.Remove(name)
	}
	return os.WriteFile(name, stripped, 0o666)
}

// snapshot is the content of the files that tidying changes.
func snapshot(root string, ws *Workspace) string {
	var b strings.Builder
	names := []string{"go.work"}
	for _, m := range ws.Modules {
		names = append(names, filepath.Join(m.Dir, "go.mod"), filepath.Join(m.Dir, "go.sum"))
	}
	for _, n := range names {
		data, _ := os.ReadFile(filepath.Join(root, n))
		fmt.Fprintf(&b, "== %s\n%s", n, data)
	}
	return b.String()
}

// gitFiles lists the files of dir that git tracks or would track (not the
// ignored ones), slash-separated and relative to dir.
func gitFiles(dir string) ([]string, error) {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", ".")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files in %s: %w", dir, err)
	}
	var files []string
	for _, f := range strings.Split(string(out), "\x00") {
		if f == "" {
			continue
		}
		if _, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(f))); err != nil {
			continue // deleted in the working tree
		}
		files = append(files, f)
	}
	slices.Sort(files)
	return files, nil
}

func repoRoot() (string, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("not in a git checkout: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// unifiedDiff returns the differences between old and new as git diff shows them.
func unifiedDiff(name string, old, new []byte) string {
	dir, err := os.MkdirTemp("", "flows-diff-")
	if err != nil {
		return ""
	}
	defer os.RemoveAll(dir)
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, old, 0o666)
	os.WriteFile(b, new, 0o666)
	out, _ := exec.Command("git", "diff", "--no-index", "--no-color", "--src-prefix=current/", "--dst-prefix=tidy/", a, b).Output()
	return strings.ReplaceAll(strings.ReplaceAll(string(out), a, name), b, name)
}
