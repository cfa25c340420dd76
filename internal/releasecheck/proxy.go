package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/zip"
)

// A Proxy is a module proxy in a directory, served to the go command as
// GOPROXY=file://<Dir>: <escaped path>/@v/list, <version>.info, .mod, .zip.
type Proxy struct {
	Dir string
}

// URL is the proxy's GOPROXY entry.
func (p *Proxy) URL() string {
	return "file://" + filepath.ToSlash(p.Dir)
}

// AddDir publishes the module found in dir (its go.mod, and its files as the
// module zip has them: without nested modules or vendor directories) at
// version, as a pushed tag would.
func (p *Proxy) AddDir(modPath, version, dir string) error {
	return p.add(modPath, version, dir, func(w io.Writer, m module.Version) error {
		return zip.CreateFromDir(w, m, dir)
	})
}

// AddFiles is AddDir for the given files of dir only (the files git tracks or
// would track), so that build outputs and node_modules stay out.
func (p *Proxy) AddFiles(modPath, version, dir string, files []string) error {
	return p.add(modPath, version, dir, func(w io.Writer, m module.Version) error {
		var zf []zip.File
		for _, f := range files {
			zf = append(zf, dirFile{dir: dir, slash: f})
		}
		return zip.Create(w, m, zf)
	})
}

func (p *Proxy) add(modPath, version, dir string, write func(io.Writer, module.Version) error) error {
	esc, err := module.EscapePath(modPath)
	if err != nil {
		return err
	}
	vdir := filepath.Join(p.Dir, filepath.FromSlash(esc), "@v")
	if err := os.MkdirAll(vdir, 0o777); err != nil {
		return err
	}
	m := module.Version{Path: modPath, Version: version}
	var buf bytes.Buffer
	if err := write(&buf, m); err != nil {
		return fmt.Errorf("zip of %s: %w", m, err)
	}
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return err
	}
	info, _ := json.Marshal(struct {
		Version string
		Time    time.Time
	}{version, time.Now().UTC().Truncate(time.Second)})
	for name, data := range map[string][]byte{version + ".zip": buf.Bytes(), version + ".mod": gomod, version + ".info": info} {
		if err := os.WriteFile(filepath.Join(vdir, name), data, 0o666); err != nil {
			return err
		}
	}
	list := filepath.Join(vdir, "list")
	old, _ := os.ReadFile(list)
	versions := strings.Fields(string(old))
	if !slices.Contains(versions, version) {
		versions = append(versions, version)
	}
	return os.WriteFile(list, []byte(strings.Join(versions, "\n")+"\n"), 0o666)
}

// Zip returns the path of the zip of modPath at version.
func (p *Proxy) Zip(modPath, version string) string {
	esc, _ := module.EscapePath(modPath)
	return filepath.Join(p.Dir, filepath.FromSlash(esc), "@v", version+".zip")
}

// dirFile is a file of a module directory, for zip.Create.
type dirFile struct{ dir, slash string }

func (f dirFile) Path() string                 { return f.slash }
func (f dirFile) Lstat() (os.FileInfo, error)  { return os.Lstat(f.name()) }
func (f dirFile) Open() (io.ReadCloser, error) { return os.Open(f.name()) }
func (f dirFile) name() string                 { return filepath.Join(f.dir, filepath.FromSlash(f.slash)) }
