//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// lockDir takes an exclusive lock on dir for the embedded server, so that
// two servers never share a store; the kernel drops it when the process
// dies, however it dies. The lock file tells the next one who holds it.
func lockDir(dir string) (release func(note string), err error) {
	name := filepath.Join(dir, "flows.lock")
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(name)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			held := strings.TrimSpace(string(b))
			if held == "" {
				held = "another process"
			}
			return nil, fmt.Errorf("%s is in use by %s: run this one with -nats on that server instead", dir, held)
		}
		return nil, err
	}
	return func(note string) {
		if note != "" {
			f.Truncate(0)
			f.WriteAt([]byte(note+"\n"), 0)
			return
		}
		f.Close()
	}, nil
}
