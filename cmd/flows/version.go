package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// cmdVersion prints the version of the command's module, as the build
// recorded it: the tag for `go install ...@v0.1.0`, "(devel)" for a build
// inside a checkout, with the commit when the build recorded one.
func cmdVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "flows: version takes no arguments\nUsage: flows version\n")
		return 2
	}
	fmt.Fprintln(stdout, versionLine(debug.ReadBuildInfo()))
	return 0
}

// versionLine is "flows <module version> <go version> <os>/<arch>", with
// the VCS revision after a development version.
func versionLine(info *debug.BuildInfo, ok bool) string {
	version, goVersion := "(unknown)", runtime.Version()
	var rev, modified string
	if ok {
		version = info.Main.Version
		if version == "" {
			version = "(devel)"
		}
		goVersion = info.GoVersion
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = "+modified"
				}
			}
		}
	}
	line := fmt.Sprintf("flows %s %s %s/%s", version, goVersion, runtime.GOOS, runtime.GOARCH)
	if version == "(devel)" && rev != "" {
		line += " " + rev + modified
	}
	return line
}
