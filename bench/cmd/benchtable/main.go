// Command benchtable turns the output of the bench module's benchmarks into
// Markdown tables of medians and of ratios against the limits and the peer,
// and writes them into README.md between two markers:
//
//	for i in 1 2 3 4 5; do go test -run '^$' -bench . -benchmem -count 1; done | tee bench.txt
//	go run ./cmd/benchtable -readme README.md bench.txt
//
// With no file it reads standard input; with -readme "" it prints the
// tables instead of writing them.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

const (
	beginMarker = "<!-- benchtable:begin -->"
	endMarker   = "<!-- benchtable:end -->"
)

func main() {
	readme := flag.String("readme", "README.md", "the file whose table to replace; empty prints the tables")
	command := flag.String("command", "for i in 1 2 3 4 5; do go test -run '^$' -bench . -benchmem -count 1; done", "the command that produced the input, for the record")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: benchtable [-readme file] [-command text] [bench output files]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(*readme, *command, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func run(readme, command string, files []string) error {
	var in io.Reader = os.Stdin
	if len(files) > 0 {
		var readers []io.Reader
		for _, name := range files {
			f, err := os.Open(name)
			if err != nil {
				return err
			}
			defer f.Close()
			readers = append(readers, f)
		}
		in = io.MultiReader(readers...)
	}
	res, err := parse(in)
	if err != nil {
		return err
	}
	if len(res.order) == 0 {
		return fmt.Errorf("no benchmark results in the input")
	}
	host, _ := os.Hostname()
	var b strings.Builder
	render(&b, res, header{
		Date:    time.Now().UTC().Format("2006-01-02"),
		Machine: machine(res, host),
		Command: command,
	})
	if readme == "" {
		fmt.Print(b.String())
		return nil
	}
	old, err := os.ReadFile(readme)
	if err != nil {
		return err
	}
	updated, err := replaceBetweenMarkers(old, b.String())
	if err != nil {
		return fmt.Errorf("%s: %w", readme, err)
	}
	return os.WriteFile(readme, updated, 0o644)
}

// machine describes where the benchmarks ran, from their output and from
// this process (which runs on the same machine, right after them).
func machine(res *results, host string) string {
	parts := []string{res.meta["goos"] + "/" + res.meta["goarch"]}
	if cpu := res.meta["cpu"]; cpu != "" {
		parts = append(parts, cpu)
	}
	parts = append(parts, fmt.Sprintf("%d CPUs", runtime.NumCPU()), runtime.Version())
	if host != "" {
		parts = append(parts, "host "+host)
	}
	return strings.Join(parts, ", ")
}

// replaceBetweenMarkers puts tables between the markers of readme.
func replaceBetweenMarkers(readme []byte, tables string) ([]byte, error) {
	i := bytes.Index(readme, []byte(beginMarker))
	j := bytes.Index(readme, []byte(endMarker))
	if i < 0 || j < i {
		return nil, fmt.Errorf("no %s ... %s section", beginMarker, endMarker)
	}
	var out bytes.Buffer
	out.Write(readme[:i+len(beginMarker)])
	out.WriteString("\n")
	out.WriteString(tables)
	out.Write(readme[j:])
	return out.Bytes(), nil
}

// readLines calls fn for each line of r.
func readLines(r io.Reader, fn func(string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		if err := fn(sc.Text()); err != nil {
			return err
		}
	}
	return sc.Err()
}
