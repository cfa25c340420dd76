// Command releasecheck keeps the repository's modules publishable, and
// proves they are before anything is tagged (see RELEASING.md).
//
//	go run ./internal/releasecheck files             # no binaries, no large files tracked
//	go run ./internal/releasecheck tidy [-diff]      # go work sync, go mod tidy, go.work(.sum)
//	go run ./internal/releasecheck release [-version v0.1.0]
//	go run ./internal/releasecheck bump v0.2.0       # the release commit's version change
//
// It is a module of its own, so that its dependency (golang.org/x/mod) stays
// out of the published modules.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

const usage = `usage: releasecheck <command> [flags]

commands:
  files     fail when git tracks an executable or a file over 1 MiB outside testdata/
  tidy      go work sync and go mod tidy every module, sync go.work and go.work.sum (-diff: only check)
  release   build a file module proxy from git archive at a candidate version and
            install and build every public module from it, as a user would
  bump      make the modules require each other at a new version (the release commit)
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "releasecheck: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "files":
		root, err := repoRoot()
		if err != nil {
			return err
		}
		return CheckTrackedFiles(root)
	case "tidy":
		return cmdTidy(args[1:], stdout, stderr)
	case "release":
		return cmdRelease(args[1:], stdout, stderr)
	case "bump":
		return cmdBump(args[1:])
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
