package demo_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"testing"
)

// maxLines is what fits on one screen, with room for the terminal's prompt.
const maxLines = 60

// The examples are documentation: a reader who opens an example's main.go
// must find its flow definition there, written out as the literals of the
// flows package, within one screen, not behind a helper of this package.
func TestExamplesShowTheirFlowInMain(t *testing.T) {
	for dir, want := range map[string][]string{
		"sequence":     {"flows.Sequence", "flows.Ping"},
		"parallel":     {"flows.Parallel", "flows.Ping"},
		"jetstream":    {"flows.Sequence", "flows.Ping"},
		"broker":       {"flows.Broker", "flows.Sequence", "flows.Ping"},
		"requestreply": {"flows.Broker", "flows.RequestReply"},
	} {
		t.Run(dir, func(t *testing.T) {
			file := filepath.Join("..", "..", dir, "main.go")
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, file, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range f.Decls {
				fn, ok := d.(*ast.FuncDecl)
				if !ok || fn.Body == nil {
					continue
				}
				lines := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1
				ast.Inspect(fn.Body, func(n ast.Node) bool {
					lit, ok := n.(*ast.CompositeLit)
					if !ok {
						return true
					}
					sel, ok := lit.Type.(*ast.SelectorExpr)
					if !ok {
						return true
					}
					id, ok := sel.X.(*ast.Ident)
					if !ok {
						return true
					}
					name := id.Name + "." + sel.Sel.Name
					if i := slices.Index(want, name); i >= 0 {
						want = slices.Delete(want, i, i+1)
						if lines > maxLines {
							t.Errorf("%s: the %s literal is in %s, %d lines long; want at most %d", file, name, fn.Name.Name, lines, maxLines)
						}
					}
					return true
				})
			}
			if len(want) > 0 {
				t.Errorf("%s shows no %v literal: its flow definition is not in main.go", file, want)
			}
		})
	}
}
