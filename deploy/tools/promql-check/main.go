// promql-check parses PromQL expressions with Prometheus's own parser, offline.
//
// Input on stdin: one JSON object per line, {"where": "...", "expr": "..."}. Every expression that
// does not parse is printed with its place; the exit status is 1 if any failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/prometheus/prometheus/promql/parser"
)

type item struct {
	Where string `json:"where"`
	Expr  string `json:"expr"`
}

func main() {
	p := parser.NewParser(parser.Options{})
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	checked, failed := 0, 0
	for scanner.Scan() {
		var it item
		if err := json.Unmarshal(scanner.Bytes(), &it); err != nil {
			fmt.Fprintf(os.Stderr, "promql-check: bad input line: %v\n", err)
			os.Exit(2)
		}
		checked++
		if _, err := p.ParseExpr(it.Expr); err != nil {
			failed++
			fmt.Printf("ERROR %s: %v\n  %s\n", it.Where, err, it.Expr)
		}
	}
	if err := scanner.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "promql-check: %v\n", err)
		os.Exit(2)
	}
	fmt.Printf("promql-check: %d expressions, %d invalid\n", checked, failed)
	if failed > 0 {
		os.Exit(1)
	}
}
