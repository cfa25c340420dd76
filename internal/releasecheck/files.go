package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// maxTrackedSize is the largest file git may track outside testdata/.
const maxTrackedSize = 1 << 20

// CheckTrackedFiles reports every file git tracks in root that is an
// executable (ELF, Mach-O or PE) or larger than 1 MiB outside a testdata
// directory: build outputs would ship in the module zips.
func CheckTrackedFiles(root string) error {
	cmd := exec.Command("git", "ls-files", "-z", "--cached")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("git ls-files: %w", err)
	}
	var errs []error
	for _, f := range strings.Split(string(out), "\x00") {
		if f == "" {
			continue
		}
		name := filepath.Join(root, filepath.FromSlash(f))
		fi, err := os.Lstat(name)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the working tree, a symlink or a submodule
		}
		if kind, err := executableKind(name); err != nil {
			errs = append(errs, err)
		} else if kind != "" {
			errs = append(errs, fmt.Errorf("%s: a %s executable is tracked: git rm --cached it, and ignore build outputs in .gitignore", f, kind))
		}
		if fi.Size() > maxTrackedSize && !slices.Contains(strings.Split(f, "/"), "testdata") {
			errs = append(errs, fmt.Errorf("%s: %d bytes, over the 1 MiB allowed outside testdata/", f, fi.Size()))
		}
	}
	return errors.Join(errs...)
}

// executableKind returns "ELF", "Mach-O" or "PE" when the file starts as
// one of those executable formats does, or "".
func executableKind(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 64)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("\x7fELF")):
		return "ELF", nil
	case len(head) >= 4 && slices.Contains([]uint32{0xfeedface, 0xfeedfacf, 0xcafebabe}, binary.BigEndian.Uint32(head)),
		len(head) >= 4 && slices.Contains([]uint32{0xfeedface, 0xfeedfacf}, binary.LittleEndian.Uint32(head)):
		return "Mach-O", nil
	case bytes.HasPrefix(head, []byte("MZ")) && len(head) >= 0x40:
		// A PE file: the DOS header's e_lfanew points at "PE\0\0".
		off := int64(binary.LittleEndian.Uint32(head[0x3c:]))
		sig := make([]byte, 4)
		if _, err := f.ReadAt(sig, off); err == nil && string(sig) == "PE\x00\x00" {
			return "PE", nil
		}
	}
	return "", nil
}
