fn main() {
    println!("parley-loadtest: scenarios arrive with the load-test issue");
}
