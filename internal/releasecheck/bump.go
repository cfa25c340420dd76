package main

import (
	"errors"
	"fmt"

	"golang.org/x/mod/semver"
)

// cmdBump makes every module of the workspace require the others at version,
// and go.work replace them at it: the change of the release commit.
func cmdBump(args []string) error {
	if len(args) != 1 || !semver.IsValid(args[0]) || semver.Canonical(args[0]) != args[0] {
		return errors.New("usage: releasecheck bump vX.Y.Z")
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	ws, err := LoadWorkspace(root)
	if err != nil {
		return err
	}
	if err := ws.SetRequires(args[0]); err != nil {
		return err
	}
	if _, err := ws.SyncWorkReplaces(args[0]); err != nil {
		return err
	}
	fmt.Printf("the modules now require each other at %s; next: go run ./internal/releasecheck tidy\n", args[0])
	return nil
}
