package main

import (
	"fmt"
	"os"
	"strings"
)

// InstallSection is what the README's "## Install" section says.
type InstallSection struct {
	Text     string   // the whole section
	Commands []string // its `go get` and `go install` lines, as written
}

// ReadInstall reads the Install section of the README at name.
func ReadInstall(name string) (*InstallSection, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	text, ok := section(string(data), "## Install")
	if !ok {
		return nil, fmt.Errorf("%s: no \"## Install\" section", name)
	}
	s := &InstallSection{Text: text}
	for _, block := range codeBlocks(text, "sh") {
		for line := range strings.Lines(block) {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "go get ") || strings.HasPrefix(line, "go install ") {
				s.Commands = append(s.Commands, line)
			}
		}
	}
	if len(s.Commands) == 0 {
		return nil, fmt.Errorf("%s: the Install section has no go get or go install line in a sh block", name)
	}
	return s, nil
}

// Target returns the argument of a `go get` or `go install` line: the
// path before the @ and the version query after it.
func Target(command string) (path, query string, err error) {
	f := strings.Fields(command)
	if len(f) < 3 {
		return "", "", fmt.Errorf("%q: want go get|install path@version", command)
	}
	arg := f[2]
	path, query, ok := strings.Cut(arg, "@")
	if !ok {
		return "", "", fmt.Errorf("%q: %s has no @version: outside a module, go install needs one", command, arg)
	}
	return path, query, nil
}

// section returns the text under the heading, up to the next heading of the
// same level or higher.
func section(doc, heading string) (string, bool) {
	level := strings.Count(strings.Fields(heading)[0], "#")
	var b strings.Builder
	in, found, fence := false, false, false
	for line := range strings.Lines(doc) {
		if strings.HasPrefix(line, "```") {
			fence = !fence
		}
		if !fence && strings.HasPrefix(line, "#") {
			hashes := len(line) - len(strings.TrimLeft(line, "#"))
			if strings.TrimSpace(line) == heading {
				in, found = true, true
				continue
			}
			if in && hashes <= level {
				in = false
			}
		}
		if in {
			b.WriteString(line)
		}
	}
	return b.String(), found
}

// codeBlocks returns the contents of the fenced code blocks of the given
// language in text.
func codeBlocks(text, lang string) []string {
	var blocks []string
	var b strings.Builder
	in := false
	for line := range strings.Lines(text) {
		t := strings.TrimSpace(line)
		switch {
		case !in && t == "```"+lang:
			in = true
			b.Reset()
		case in && t == "```":
			in = false
			blocks = append(blocks, b.String())
		case in:
			b.WriteString(line)
		}
	}
	return blocks
}
