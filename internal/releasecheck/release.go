package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/mod/semver"
)

// cmdRelease proves that the modules at a git revision can be released at a
// candidate version: it publishes them into a file module proxy from git
// archive, in the order their tags must be pushed (each module's go.mod
// must be tidy against the modules published before it), then, in scratch
// modules outside the repository with GOWORK=off, runs the README's
// Install lines as written, builds a program that imports each module, and
// runs the installed command's version subcommand.
func cmdRelease(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	fs.SetOutput(stderr)
	version := fs.String("version", "", "the candidate version (default: the version at which the modules require each other)")
	rev := fs.String("rev", "HEAD", "the git revision to archive")
	keep := fs.Bool("keep", false, "keep the scratch directory (proxy, sources, consumers) and print its path")
	allowNoVersion := fs.Bool("allow-no-version-command", false, "accept an installed command that does not know the version subcommand yet")
	if err := fs.Parse(args); err != nil {
		return err
	}
	start := time.Now()
	root, err := repoRoot()
	if err != nil {
		return err
	}
	scratch, err := os.MkdirTemp("", "flows-release-")
	if err != nil {
		return err
	}
	if *keep {
		fmt.Fprintf(stdout, "scratch directory: %s\n", scratch)
	} else {
		defer os.RemoveAll(scratch)
	}
	src := filepath.Join(scratch, "src")
	if err := gitArchive(root, *rev, src); err != nil {
		return err
	}
	ws, err := LoadWorkspace(src)
	if err != nil {
		return err
	}
	record, err := ws.VersionOfRecord()
	if err != nil {
		return err
	}
	if *version == "" {
		*version = record
	}
	if !semver.IsValid(*version) || semver.Canonical(*version) != *version {
		return fmt.Errorf("candidate %q: want a version such as v0.1.0", *version)
	}
	if *version != record {
		fmt.Fprintf(stdout, "the modules require each other at %s: the release commit must run `releasecheck bump %s` (done here in the copy)\n", record, *version)
		if err := ws.SetRequires(*version); err != nil {
			return err
		}
		if ws, err = LoadWorkspace(src); err != nil {
			return err
		}
	}
	published, err := ws.Published()
	if err != nil {
		return err
	}
	env, err := newGoEnv(&Proxy{Dir: filepath.Join(scratch, "proxy")}, scratch)
	if err != nil {
		return err
	}
	defer env.close()

	license, err := os.ReadFile(filepath.Join(src, "LICENSE"))
	if err != nil {
		return fmt.Errorf("no LICENSE at the root of %s: %w", *rev, err)
	}
	fmt.Fprintf(stdout, "publishing %s of %s into %s, in tag order:\n", *version, *rev, env.proxy.URL())
	for _, m := range published {
		dir := filepath.Join(src, filepath.FromSlash(m.Dir))
		// A module zip has only the module's own files: a nested module
		// needs its own copy of the licence.
		if own, err := os.ReadFile(filepath.Join(dir, "LICENSE")); err != nil || !bytes.Equal(own, license) {
			return fmt.Errorf("%s: want a copy of the root LICENSE in %s/ (its zip has only the module's files)", m.Path, m.Dir)
		}
		if err := checkTidy(env, ws, m, dir); err != nil {
			return err
		}
		if err := env.proxy.AddDir(m.Path, *version, dir); err != nil {
			return err
		}
		fi, err := os.Stat(env.proxy.Zip(m.Path, *version))
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "  git tag %-22s # %s, zip %d KiB\n", m.Tag(*version), m.Path, fi.Size()>>10)
	}

	install, err := ReadInstall(filepath.Join(src, "README.md"))
	if err != nil {
		return err
	}
	if err := checkInstallCoversModules(ws, published, install, src); err != nil {
		return err
	}
	bin := filepath.Join(scratch, "bin")
	env.extra = append(env.extra, "GOBIN="+bin)
	for i, line := range install.Commands {
		if err := runInstallLine(env, ws, filepath.Join(scratch, fmt.Sprintf("consumer%d", i)), bin, line, *version, *allowNoVersion, stdout); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "release check of %s passed in %s\n", *version, time.Since(start).Round(100*time.Millisecond))
	return nil
}

// checkTidy runs go mod tidy on m with only the modules published so far:
// a module whose go.mod needed one of ours not yet tagged, or anything but
// the hashes of our own modules in go.sum, fails.
func checkTidy(env *goEnv, ws *Workspace, m *Module, dir string) error {
	var orig [2][]byte
	names := [2]string{filepath.Join(dir, "go.mod"), filepath.Join(dir, "go.sum")}
	for i, n := range names {
		orig[i], _ = os.ReadFile(n)
	}
	defer func() {
		for i, n := range names {
			os.WriteFile(n, orig[i], 0o666)
		}
	}()
	if _, err := env.run(dir, false, "go", "mod", "tidy"); err != nil {
		return fmt.Errorf("%s, published after the modules it requires: %w", m.Path, err)
	}
	var diffs string
	for i, n := range names {
		now, _ := os.ReadFile(n)
		if i == 1 {
			now = ws.StripOwnSums(now)
		}
		if !bytes.Equal(now, orig[i]) {
			diffs += unifiedDiff(path.Join(m.Dir, filepath.Base(n)), orig[i], now)
		}
	}
	if diffs != "" {
		return fmt.Errorf("%s: go mod tidy, as a user would run it on the published module, changes it:\n%s", m.Path, diffs)
	}
	return nil
}

// checkInstallCoversModules checks that the Install section has a line for
// each published module, the Go version the modules need, and nothing else.
func checkInstallCoversModules(ws *Workspace, published []*Module, install *InstallSection, src string) error {
	var errs []error
	named := map[string]bool{}
	for _, line := range install.Commands {
		p, _, err := Target(line)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m := providing(published, p)
		if m == nil {
			errs = append(errs, fmt.Errorf("README Install: %q: no published module provides %s", line, p))
			continue
		}
		named[m.Path] = true
	}
	for _, m := range published {
		if !named[m.Path] {
			errs = append(errs, fmt.Errorf("README Install: no go get or go install line for %s", m.Path))
		}
	}
	if gv := ws.Module(corePath).File.Go; gv != nil {
		want := "Go " + strings.Join(strings.Split(gv.Version, ".")[:2], ".")
		if !strings.Contains(install.Text, want) {
			errs = append(errs, fmt.Errorf("README Install: does not say %q, the version go.mod needs", want))
		}
	}
	return errors.Join(errs...)
}

// providing returns the published module with the longest path that is a
// prefix of the package path p.
func providing(mods []*Module, p string) *Module {
	var best *Module
	for _, m := range mods {
		if (p == m.Path || strings.HasPrefix(p, m.Path+"/")) && (best == nil || len(m.Path) > len(best.Path)) {
			// A package of a nested module is not in the enclosing one.
			best = m
		}
	}
	return best
}

// runInstallLine runs one Install line as written, in a new module outside
// the repository, and checks its result as a user would.
func runInstallLine(env *goEnv, ws *Workspace, dir, bin, line, version string, allowNoVersion bool, stdout io.Writer) error {
	p, _, err := Target(line)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	t := time.Now()
	shown, _, _ := strings.Cut(line, "#")
	shown = strings.TrimSpace(shown)
	if strings.HasPrefix(line, "go install ") {
		if _, err := env.run(dir, false, "sh", "-c", line); err != nil {
			return fmt.Errorf("README Install: %w", err)
		}
		exe := filepath.Join(bin, path.Base(p))
		out, err := exec.Command(exe, "version").CombinedOutput()
		switch {
		case err == nil && strings.Contains(string(out), version):
			fmt.Fprintf(stdout, "  ok  %-58s %s version: %s (%s)\n", shown, path.Base(p), strings.TrimSpace(firstLine(string(out))), time.Since(t).Round(100*time.Millisecond))
		case allowNoVersion && strings.Contains(string(out), `unknown command "version"`):
			fmt.Fprintf(stdout, "  ok  %-58s WARNING: %s has no version subcommand yet (accepted by -allow-no-version-command)\n", shown, path.Base(p))
		default:
			return fmt.Errorf("%s version: want output with %s, got %v:\n%s", exe, version, err, indent(string(out)))
		}
		return nil
	}
	if _, err := env.run(dir, false, "go", "mod", "init", "example.com/consumer"); err != nil {
		return err
	}
	prog := fmt.Sprintf("// A program that uses %s, as a user's would.\npackage main\n\nimport _ %q\n\nfunc main() {}\n", p, p)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(prog), 0o666); err != nil {
		return err
	}
	if _, err := env.run(dir, false, "sh", "-c", line); err != nil {
		return fmt.Errorf("README Install: %w", err)
	}
	if _, err := env.run(dir, false, "go", "build", "-o", os.DevNull, "."); err != nil {
		return fmt.Errorf("a program importing %s after %q: %w", p, line, err)
	}
	out, err := env.run(dir, false, "go", "list", "-m", "-f", "{{.Version}}", p)
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(out); got != version {
		return fmt.Errorf("%q selected %s %s, want the candidate %s", line, p, got, version)
	}
	fmt.Fprintf(stdout, "  ok  %-58s a program importing it builds (%s)\n", shown, time.Since(t).Round(100*time.Millisecond))
	return nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// gitArchive extracts git archive of rev in repository root into dst.
func gitArchive(root, rev, dst string) error {
	cmd := exec.Command("git", "archive", "--format=tar", rev)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	tr := tar.NewReader(pipe)
	var xerr error
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			xerr = err
			break
		}
		name := filepath.Join(dst, filepath.FromSlash(path.Clean(h.Name)))
		if !strings.HasPrefix(name, dst+string(filepath.Separator)) && name != dst {
			xerr = fmt.Errorf("git archive: entry %q outside the tree", h.Name)
			break
		}
		switch h.Typeflag {
		case tar.TypeDir:
			xerr = os.MkdirAll(name, 0o777)
		case tar.TypeReg:
			if xerr = os.MkdirAll(filepath.Dir(name), 0o777); xerr == nil {
				var f *os.File
				if f, xerr = os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o777|0o600); xerr == nil {
					_, xerr = io.Copy(f, tr)
					if cerr := f.Close(); xerr == nil {
						xerr = cerr
					}
				}
			}
		case tar.TypeSymlink:
			if xerr = os.MkdirAll(filepath.Dir(name), 0o777); xerr == nil {
				xerr = os.Symlink(h.Linkname, name)
			}
		}
		if xerr != nil {
			break
		}
	}
	io.Copy(io.Discard, pipe)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git archive %s: %w: %s", rev, err, stderr.String())
	}
	return xerr
}
