package flowstest_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// go doc is how users read flows and flowstest: each package has one
// package comment (two would be printed one after the other, the first
// found opening the docs), and every exported name and constant has a doc
// comment.
func TestGoDocReadsCleanly(t *testing.T) {
	for dir, pkg := range map[string]string{".": "flowstest", "..": "flows"} {
		t.Run(pkg, func(t *testing.T) {
			fset := token.NewFileSet()
			paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
			if err != nil {
				t.Fatal(err)
			}
			files := map[string]*ast.File{}
			for _, path := range paths {
				if strings.HasSuffix(path, "_test.go") {
					continue
				}
				f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
				if err != nil {
					t.Fatal(err)
				}
				if f.Name.Name != pkg {
					t.Fatalf("%s: package %s, want %s", path, f.Name.Name, pkg)
				}
				files[path] = f
			}
			var docs []string
			for name, f := range files {
				if f.Doc != nil {
					docs = append(docs, filepath.Base(name))
					if want := "Package " + pkg + " "; !strings.HasPrefix(f.Doc.Text(), want) {
						t.Errorf("%s: the package comment starts with %q, want %q", name, firstLine(f.Doc.Text()), want)
					}
				}
				for _, missing := range undocumented(f) {
					t.Errorf("%s: %s has no doc comment", fset.Position(missing.Pos()), missing.Name)
				}
			}
			if slices.Sort(docs); len(docs) != 1 {
				t.Errorf("package %s has %d package comments, in %v; want one", pkg, len(docs), docs)
			}
		})
	}
}

// undocumented returns the exported names of f's top-level declarations,
// and of the exported types' methods, that have no doc comment. A constant
// or variable of a group needs its own comment, above or after it.
func undocumented(f *ast.File) []*ast.Ident {
	var missing []*ast.Ident
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if !d.Name.IsExported() || d.Doc != nil {
				continue
			}
			if d.Recv != nil {
				recv := d.Recv.List[0].Type
				if star, ok := recv.(*ast.StarExpr); ok {
					recv = star.X
				}
				if id, ok := recv.(*ast.Ident); ok && !id.IsExported() {
					continue // not shown by go doc
				}
			}
			missing = append(missing, d.Name)
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					if s.Name.IsExported() && s.Doc == nil && d.Doc == nil {
						missing = append(missing, s.Name)
					}
				case *ast.ValueSpec:
					documented := s.Doc != nil || s.Comment != nil || (len(d.Specs) == 1 && d.Doc != nil)
					for _, n := range s.Names {
						if n.IsExported() && !documented {
							missing = append(missing, n)
						}
					}
				}
			}
		}
	}
	return missing
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
