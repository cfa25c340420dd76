package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// goEnv is the environment in which go commands see the modules of a Proxy
// as if their tags had been pushed: the proxy comes first, then the local
// module cache (for speed), then the usual proxy for third-party modules.
// The module cache is a scratch one, so that versions made up by the check
// never reach the real cache, and the checksum database is never asked
// about our modules (it has never seen them).
type goEnv struct {
	proxy    *Proxy
	modcache string
	extra    []string
}

func newGoEnv(proxy *Proxy, scratch string) (*goEnv, error) {
	modcache := filepath.Join(scratch, "modcache")
	if err := os.MkdirAll(modcache, 0o777); err != nil {
		return nil, err
	}
	return &goEnv{proxy: proxy, modcache: modcache}, nil
}

func goenv(name string) string {
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func (e *goEnv) environ(workspace bool) []string {
	proxies := []string{e.proxy.URL()}
	if mc := goenv("GOMODCACHE"); mc != "" {
		proxies = append(proxies, "file://"+filepath.ToSlash(filepath.Join(mc, "cache", "download")))
	}
	if def := goenv("GOPROXY"); def != "" && def != "off" {
		proxies = append(proxies, def)
	}
	nosumdb := corePath
	if v := goenv("GONOSUMDB"); v != "" {
		nosumdb = v + "," + corePath
	}
	env := append(os.Environ(),
		"GOPROXY="+strings.Join(proxies, ","),
		"GONOSUMDB="+nosumdb,
		"GOMODCACHE="+e.modcache,
		"GOFLAGS="+strings.TrimSpace(goenv("GOFLAGS")+" -modcacherw"),
	)
	if workspace {
		env = append(env, "GOWORK=") // find go.work, whatever the caller's GOWORK
	} else {
		env = append(env, "GOWORK=off")
	}
	return append(env, e.extra...)
}

// run runs name args in dir and returns its combined output; the error
// includes that output.
func (e *goEnv) run(dir string, workspace bool, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = e.environ(workspace)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s: %s %s: %w\n%s", dir, name, strings.Join(args, " "), err, indent(out.String()))
	}
	return out.String(), nil
}

// close removes the scratch module cache.
func (e *goEnv) close() error {
	return os.RemoveAll(e.modcache)
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "\t" + strings.ReplaceAll(s, "\n", "\n\t")
}
