# Reads two integers from stdin and prints their sum.
a, b = map(int, input().split())
print(a + b)
