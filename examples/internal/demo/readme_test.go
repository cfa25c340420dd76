package demo_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// root is the repository's root, from this package's directory.
var root = filepath.Join("..", "..", "..")

var (
	// repoPath matches a path into the repository, as the README writes
	// them in commands and prose: examples/manifests/sequence, ./cmd/flows.
	repoPath = regexp.MustCompile(`^(?:\./)?(?:examples|cmd|bench|jetstream|manifest|otelflows|oidcauth|flowstest|testdata)(?:/[\w.-]+)*/?(?:/\.\.\.)?$`)
	// cdDir matches "cd dir &&", after which paths are relative to dir.
	cdDir     = regexp.MustCompile(`\bcd ([\w./-]+) &&`)
	backticks = regexp.MustCompile("`([^`]+)`")
	yamlName  = regexp.MustCompile(`^[\w.-]+\.ya?ml$`)
)

// A reader runs the README's commands from the root of a checkout and
// looks for the files it names: every path into the repository exists, and
// a YAML file named in prose is in a folder named with it.
func TestREADMEPathsExist(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	inCode := false
	for i, para := range strings.Split(string(b), "\n\n") {
		var dirs, yamls []string
		for _, line := range strings.Split(para, "\n") {
			if strings.HasPrefix(line, "```") {
				inCode = !inCode
				continue
			}
			base := root
			if m := cdDir.FindStringSubmatch(line); m != nil {
				if _, err := os.Stat(filepath.Join(root, m[1])); err != nil {
					t.Errorf("README.md changes to %s, which is not in the repository: %q", m[1], line)
				}
				base = filepath.Join(root, m[1])
				line = strings.Replace(line, m[0], "", 1)
			}
			for _, word := range strings.FieldsFunc(line, func(r rune) bool { return strings.ContainsRune(" \t`'\"()=,:;", r) }) {
				if !repoPath.MatchString(word) {
					continue
				}
				p := strings.TrimSuffix(word, "/...")
				if _, err := os.Stat(filepath.Join(base, p)); err != nil {
					t.Errorf("README.md names %s, which is not in the repository: %q", word, line)
				}
				if strings.HasSuffix(p, "/") {
					dirs = append(dirs, p)
				}
			}
			if inCode {
				continue // code names a reader's own files
			}
			for _, m := range backticks.FindAllStringSubmatch(line, -1) {
				if yamlName.MatchString(m[1]) {
					yamls = append(yamls, m[1])
				}
			}
		}
		for _, y := range yamls {
			found := false
			for _, d := range dirs {
				if _, err := os.Stat(filepath.Join(root, d, y)); err == nil {
					found = true
				}
			}
			if !found {
				t.Errorf("README.md, paragraph %d: %s is in none of the folders it names, %v", i+1, y, dirs)
			}
		}
	}
}
