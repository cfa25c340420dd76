package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/modfile"
)

// corePath is the module at the root of the repository; every other module
// of the workspace has a path under it.
const corePath = "github.com/eventflows/flows"

// A Module is one module of the workspace, as go.work lists it.
type Module struct {
	Dir  string // relative to the repository root, slash-separated; "." for the core
	Path string
	File *modfile.File
}

// Published reports whether the module is tagged and announced in the README's
// Install section. Benchmarks, examples and internal tools are modules only to
// keep their dependencies apart; nobody depends on them.
func (m *Module) Published() bool {
	d := m.Dir + "/"
	return !strings.HasPrefix(d, "examples/") && !strings.HasPrefix(d, "internal/") && d != "bench/"
}

// Tag is the git tag that publishes the module at version v.
func (m *Module) Tag(v string) string {
	if m.Dir == "." {
		return v
	}
	return m.Dir + "/" + v
}

// A Workspace is the repository's go.work and the modules it uses.
type Workspace struct {
	Root    string
	Work    *modfile.WorkFile
	Modules []*Module // in the order of go.work
}

// LoadWorkspace reads root/go.work and the go.mod of each module it uses.
func LoadWorkspace(root string) (*Workspace, error) {
	name := filepath.Join(root, "go.work")
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	wf, err := modfile.ParseWork(name, data, nil)
	if err != nil {
		return nil, err
	}
	ws := &Workspace{Root: root, Work: wf}
	for _, u := range wf.Use {
		dir := path.Clean(filepath.ToSlash(u.Path))
		gomod := filepath.Join(root, filepath.FromSlash(dir), "go.mod")
		data, err := os.ReadFile(gomod)
		if err != nil {
			return nil, err
		}
		f, err := modfile.Parse(gomod, data, nil)
		if err != nil {
			return nil, err
		}
		if f.Module == nil {
			return nil, fmt.Errorf("%s: no module line", gomod)
		}
		ws.Modules = append(ws.Modules, &Module{Dir: dir, Path: f.Module.Mod.Path, File: f})
	}
	if ws.Module(corePath) == nil {
		return nil, fmt.Errorf("%s: does not use the module %s", name, corePath)
	}
	return ws, nil
}

// Module returns the workspace module with the given path, or nil.
func (ws *Workspace) Module(modPath string) *Module {
	for _, m := range ws.Modules {
		if m.Path == modPath {
			return m
		}
	}
	return nil
}

// Published returns the published modules in the order their tags must be
// pushed: each after the modules it requires.
func (ws *Workspace) Published() ([]*Module, error) {
	var order []*Module
	done := map[string]bool{}
	var visit func(m *Module, stack []string) error
	visit = func(m *Module, stack []string) error {
		if done[m.Path] {
			return nil
		}
		if slices.Contains(stack, m.Path) {
			return fmt.Errorf("modules require each other in a cycle: %s", strings.Join(append(stack, m.Path), " -> "))
		}
		for _, r := range m.File.Require {
			dep := ws.Module(r.Mod.Path)
			if dep == nil {
				continue
			}
			if !dep.Published() {
				return fmt.Errorf("%s/go.mod: requires %s, which is not published", m.Dir, dep.Path)
			}
			if err := visit(dep, append(stack, m.Path)); err != nil {
				return err
			}
		}
		done[m.Path] = true
		order = append(order, m)
		return nil
	}
	for _, m := range ws.Modules {
		if m.Published() {
			if err := visit(m, nil); err != nil {
				return nil, err
			}
		}
	}
	return order, nil
}

// VersionOfRecord returns the one version at which the workspace's modules
// require each other, and checks that there is exactly one and that go.mod
// files carry no replace directives for them: in the repository, go.work
// supplies the modules; a published go.mod must stand on its own.
func (ws *Workspace) VersionOfRecord() (string, error) {
	var errs []error
	version := ""
	for _, m := range ws.Modules {
		for _, r := range m.File.Replace {
			errs = append(errs, fmt.Errorf("%s/go.mod: replace %s: a published go.mod must not replace modules (go install refuses it, consumers ignore it); go.work ties the modules together", m.Dir, r.Old.Path))
		}
		for _, r := range m.File.Require {
			if ws.Module(r.Mod.Path) == nil {
				continue
			}
			switch {
			case version == "":
				version = r.Mod.Version
			case r.Mod.Version != version:
				errs = append(errs, fmt.Errorf("%s/go.mod: requires %s %s; the other modules require %s: the modules are released together, at one version", m.Dir, r.Mod.Path, r.Mod.Version, version))
			}
		}
	}
	if version == "" && len(errs) == 0 {
		errs = append(errs, errors.New("no module of the workspace requires another one"))
	}
	return version, errors.Join(errs...)
}

// Required returns the workspace modules that other workspace modules require.
func (ws *Workspace) Required() []*Module {
	var req []*Module
	for _, m := range ws.Modules {
		for _, o := range ws.Modules {
			if slices.ContainsFunc(o.File.Require, func(r *modfile.Require) bool { return r.Mod.Path == m.Path }) {
				req = append(req, m)
				break
			}
		}
	}
	return req
}

// SyncWorkReplaces rewrites go.work's replace directives so that each module
// the others require, at version, is read from its directory: until version
// is tagged, the module proxy does not have it. It reports whether go.work
// changed.
func (ws *Workspace) SyncWorkReplaces(version string) (bool, error) {
	want := map[string]string{}
	for _, m := range ws.Required() {
		want[m.Path] = "./" + m.Dir
		if m.Dir == "." {
			want[m.Path] = "./"
		}
	}
	have := map[string]string{}
	same := true
	for _, r := range ws.Work.Replace {
		if ws.Module(r.Old.Path) == nil {
			continue
		}
		have[r.Old.Path] = r.New.Path
		if r.Old.Version != version || r.New.Version != "" || want[r.Old.Path] != r.New.Path {
			same = false
		}
	}
	if same && len(have) == len(want) {
		return false, nil
	}
	for _, r := range slices.Clone(ws.Work.Replace) {
		if ws.Module(r.Old.Path) != nil {
			if err := ws.Work.DropReplace(r.Old.Path, r.Old.Version); err != nil {
				return false, err
			}
		}
	}
	ws.Work.Cleanup()
	var b strings.Builder
	b.Write(modfile.Format(ws.Work.Syntax))
	b.WriteString(workReplaceComment)
	b.WriteString("replace (\n")
	for _, p := range slices.Sorted(maps.Keys(want)) {
		fmt.Fprintf(&b, "\t%s %s => %s\n", p, version, want[p])
	}
	b.WriteString(")\n")
	name := filepath.Join(ws.Root, "go.work")
	if err := os.WriteFile(name, []byte(b.String()), 0o666); err != nil {
		return false, err
	}
	wf, err := modfile.ParseWork(name, []byte(b.String()), nil)
	if err != nil {
		return false, err
	}
	ws.Work = wf
	return true, nil
}

const workReplaceComment = `
// The modules require each other at the version of their next release
// (RELEASING.md). Until it is tagged, no module proxy has it: these read the
// go.mod files of those versions from the workspace. Written by
// go run ./internal/releasecheck tidy.
`

// SetRequires makes every go.mod of the workspace require the workspace's
// modules at version (the release commit of RELEASING.md).
func (ws *Workspace) SetRequires(version string) error {
	for _, m := range ws.Modules {
		changed := false
		for _, r := range m.File.Require {
			if ws.Module(r.Mod.Path) != nil && r.Mod.Version != version {
				if err := m.File.AddRequire(r.Mod.Path, version); err != nil {
					return err
				}
				changed = true
			}
		}
		if !changed {
			continue
		}
		m.File.Cleanup()
		data, err := m.File.Format()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(ws.Root, filepath.FromSlash(m.Dir), "go.mod"), data, 0o666); err != nil {
			return err
		}
	}
	return nil
}

// StripOwnSums removes from go.sum data the lines of the workspace's own
// modules: their hashes are known only once they are tagged, and nothing
// needs them (consumers verify through the checksum database, and inside the
// repository go.work supplies the modules).
func (ws *Workspace) StripOwnSums(data []byte) []byte {
	var out []string
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) > 0 && ws.Module(f[0]) != nil {
			continue
		}
		out = append(out, line)
	}
	return []byte(strings.Join(out, ""))
}
